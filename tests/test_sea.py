"""Synchronous External Aborts on poisoned memory: instruction fetches versus data
accesses, the preferred return address, and a guest crash ending `armras run` with 126.

Expected syndromes are written out from the Arm ARM (DDI 0487, D17.2.37 ESR_EL1):
EC 0x20 = instruction abort from a lower EL, 0x21 = instruction abort taken without a
change of EL, 0x24/0x25 the data-abort equivalents; IL (bit 25) = 1; ISS bit 10 = FnV
(FAR not valid, as KVM's kvm_inject_arm_sea reports); IFSC/DFSC 0b010000 = synchronous
external abort not on a translation table walk.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, assemble, make_elf
from test_machine import guest

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
POISON = 0x40F00000   # a RAM page the snippets never use otherwise

# The SEA source's CPER (UEFI N.2.5 memory error section, QEMU's 172-byte record): the
# physical address field sits after the 20-byte status block header, the 72-byte
# generic data entry (v0x300) and 16 bytes of the section (validation bits, status).
CPER_PA_OFFSET = 20 + 72 + 16


def _cper_pa(machine) -> int:
    block = machine.sources.by_id(0).block_address()
    return machine.mem.read_u64(block + CPER_PA_OFFSET)


def test_instruction_fetch_from_poisoned_page_at_el1_is_an_instruction_abort(board):
    b = board(guest(f"""
 ldr x5, ={POISON:#x}
 adr x28, back             // the handler resumes here (EL1h): the page stays poisoned
 hvc #0x99                 // the host poisons the page now
 blr x5                    // fetch from the poisoned page
back:
"""))
    m = b.machine
    m.hvc_handlers[0x99] = lambda cpu: m.poison(POISON)
    r = b.run()
    assert r.status == 0
    assert b.x(20) == 0x86000410          # EC 0x21 (IABT, same EL), IL, FnV, IFSC 0x10
    assert b.x(21) == POISON              # ELR: the instruction that could not be fetched
    assert b.x(24) == 0x200               # current EL with SP_ELx, synchronous
    assert _cper_pa(m) == POISON


def test_instruction_fetch_from_poisoned_page_at_el0_is_a_lower_el_instruction_abort(board):
    b = board(guest(f"""
 ldr x5, ={POISON:#x}
 adr x28, back
 hvc #0x99
 msr elr_el1, x5           // "return" to EL0t at the poisoned page
 msr spsr_el1, xzr
 eret
back:
"""))
    m = b.machine
    m.hvc_handlers[0x99] = lambda cpu: m.poison(POISON)
    r = b.run()
    assert r.status == 0
    assert b.x(20) == 0x82000410          # EC 0x20 (IABT, lower EL), IL, FnV, IFSC 0x10
    assert b.x(21) == POISON
    assert b.x(22) & 0xF == 0             # SPSR.M: taken from EL0t
    assert b.x(24) == 0x400               # lower EL using AArch64, synchronous
    assert _cper_pa(m) == POISON


def test_data_abort_elr_is_the_faulting_load(board):
    b = board(guest(f"""
 ldr x5, ={POISON:#x}
 hvc #0x99
 mov x6, #0x1234
load:
 ldr x6, [x5, #0x28]       // SEA: the load never completes
 adr x7, load
"""))
    m = b.machine
    m.hvc_handlers[0x99] = lambda cpu: m.poison(POISON + 0x28)
    r = b.run()
    assert r.status == 0
    assert b.x(20) == 0x96000410          # EC 0x25 (DABT, same EL), IL, FnV, DFSC 0x10
    assert b.x(21) == b.x(7)              # ELR = the load itself, not the next instruction
    assert b.x(6) == 0x1234               # its destination register was not written
    assert _cper_pa(m) == POISON          # the page, as KVM reports BUS_MCEERR_AR


def test_guest_crash_exits_126_from_the_cli(tmp_path: Path) -> None:
    # An undefined instruction with VBAR_EL1 still 0 (reset value): the exception has
    # nowhere to go, the platform is crashed (README: exit 126, with a crash report).
    elf = tmp_path / "crash.elf"
    elf.write_bytes(make_elf(assemble(" ldr x1, =0x09000000\n mov w2, #'C'\n str w2, [x1]\n"
                                      " mov w2, #'\\n'\n str w2, [x1]\n .word 0\n")))
    proc = subprocess.run([sys.executable, "-m", "armras", "run", str(elf), "--timeout", "20"],
                          capture_output=True, text=True, timeout=60, env=ENV, cwd=REPO)
    assert proc.returncode == 126, proc.stdout + proc.stderr
    assert proc.stdout.startswith("C")                       # the guest ran until the crash
    assert "vector table" in proc.stderr and "Traceback" not in proc.stderr
