"""SMP: several vCPUs on one board, seen from the guest.

Bare-metal guests (the `board` fixture with `cpus=4`) start secondaries with PSCI,
send each other SGIs through the GICv2 distributor, run a generic timer each and take
an injected SEA on the CPU it names; what each CPU saw is written to guest memory and
read back here. Linux guests (`kernel` marker) bring up four CPUs, offline and online
one, and report errors on the CPU they are told.

Expected values are the specs', written out here, never taken from armras:
* PSCI (Arm DEN 0022D 5.1, table 6): CPU_ON 0xC4000003 (SMC64), CPU_OFF 0x84000002,
  AFFINITY_INFO 0xC4000004, SYSTEM_OFF 0x84000008; SUCCESS 0, INVALID_PARAMETERS -2,
  ALREADY_ON -4, ON_PENDING -5, INVALID_ADDRESS -9 (sign-extended in x0);
  AFFINITY_INFO: 0 ON, 1 OFF, 2 ON_PENDING.
* GICv2 (IHI 0048B): distributor at 0x08000000, GICD_CTLR +0x000, GICD_ISENABLER0
  +0x100, GICD_SGIR +0xF00 (TargetListFilter [25:24], CPUTargetList [23:16], SGIINTID
  [3:0]); CPU interface at 0x08010000, GICC_CTLR +0x00, GICC_PMR +0x04, GICC_IAR +0x0C
  (for an SGI, the source CPU in [12:10]), GICC_EOIR +0x10.
* MPIDR_EL1 of CPU n on this board: 0x80000000 | n (bit 31 RES1, Aff0 = n).
* SEA injected at EL1: ESR_EL1 0x96000410 (EC 0x25, IL, FnV, DFSC 0x10), as QEMU's
  kvm_inject_arm_sea.
"""
from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from armras.drive.inject import parse_inject_spec, schedule
from armras.ras import cper
from armras.ras.sources import SOURCE_SEA
from conftest import REPO, debian_kernel, in_order

RES = 0x4020_0000            # results area every guest below writes (RAM, far from the code)
PER_CPU = 0x4020_0400        # + cpu * 0x40: per-CPU slots written by the exception handlers
PER_CPU_SIZE = 0x40

NEG = 2**64                  # PSCI's negative return codes, as the 64-bit x0 holds them
SUCCESS, INVALID_PARAMETERS, ALREADY_ON, ON_PENDING, INVALID_ADDRESS = 0, NEG - 2, NEG - 4, NEG - 5, NEG - 9
AFF_ON, AFF_OFF, AFF_ON_PENDING = 0, 1, 2

ESR_SEA_EL1 = 0x96000410

POWER_OFF = """
 ldr x0, =0x84000008
 mov x1, #0
 hvc #0
 b .
"""


def cpu_on(mpidr: int, entry: str, context: int) -> str:
    """PSCI CPU_ON (SMC64) over HVC; x0 holds the result afterwards."""
    return f"""
 ldr x0, =0xC4000003
 ldr x1, ={mpidr:#x}
 {entry}
 ldr x3, ={context:#x}
 hvc #0
"""


def affinity_info(mpidr: int) -> str:
    return f"""
 ldr x0, =0xC4000004
 ldr x1, ={mpidr:#x}
 mov x2, #0
 hvc #0
"""


# Every CPU's exception handlers use only x9-x14 (the code they interrupt never does);
# x12 points at the CPU's PER_CPU slot:
#   +0x00 IRQs taken   +0x08 last GICC_IAR   +0x10 ESR_EL1 of the last synchronous exception
#   +0x18 MPIDR_EL1 in that handler   +0x20 synchronous exceptions taken   +0x28 ELR_EL1
#   +0x30 timer period   +0x38 ready flag (written by the CPU's main code)
HANDLER_PROLOGUE = f"""
 mrs x9, mpidr_el1
 and x9, x9, #0xff
 lsl x9, x9, #6
 ldr x12, ={PER_CPU:#x}
 add x12, x12, x9
"""

SYNC_HANDLER = """
sync_handler:
""" + HANDLER_PROLOGUE + """
 mrs x9, esr_el1
 str x9, [x12, #0x10]
 mrs x9, mpidr_el1
 str x9, [x12, #0x18]
 ldr x9, [x12, #0x20]
 add x9, x9, #1
 str x9, [x12, #0x20]
 mrs x9, elr_el1
 str x9, [x12, #0x28]
 eret                      // an injected SEA is asynchronous to the code: ELR is where it resumes
"""

IRQ_HANDLER = """
irq_handler:
""" + HANDLER_PROLOGUE + """
 ldr x10, =0x08010000
 ldr w11, [x10, #0x0c]     // GICC_IAR: acknowledge
 ldr x9, [x12]
 add x9, x9, #1
 str x9, [x12]
 str x11, [x12, #0x08]
 str w11, [x10, #0x10]     // GICC_EOIR
 eret
"""


def vectors(sync: str = "sync_handler", irq: str = "irq_handler") -> str:
    """A VBAR_EL1 table: every synchronous slot to `sync`, every IRQ slot to `irq`."""
    slots = []
    for base in range(0, 0x800, 0x200):
        slots += [f" .balign 0x80\n b {sync}\n", f" .balign 0x80\n b {irq}\n", " .balign 0x80\n b .\n",
                  " .balign 0x80\n b .\n"]
    return "\n .balign 0x800\nvectors:\n" + "".join(slots)


# Per CPU: vectors, GIC CPU interface on with the lowest priority mask, interrupts in
# `enable_mask` enabled in the CPU's banked GICD_ISENABLER0; x20 = this CPU's index.
def percpu_setup(enable_mask: int) -> str:
    return f"""
 adr x21, vectors
 msr vbar_el1, x21
 mrs x20, mpidr_el1
 and x20, x20, #0xff
 ldr x21, =0x08010000
 mov w22, #0xff
 str w22, [x21, #0x04]     // GICC_PMR
 mov w22, #1
 str w22, [x21, #0x00]     // GICC_CTLR.Enable
 ldr x21, =0x08000000
 ldr w22, ={enable_mask:#x}
 str w22, [x21, #0x100]    // GICD_ISENABLER0 (banked)
 ldr x21, ={PER_CPU:#x}
 add x21, x21, x20, lsl #6 // x21: this CPU's slot
"""


def words(b, address: int, n: int) -> list[int]:
    return list(struct.unpack(f"<{n}Q", b.machine.mem.read(address, 8 * n)))


def slot(b, cpu: int) -> dict[str, int]:
    v = words(b, PER_CPU + cpu * PER_CPU_SIZE, 8)
    return dict(zip(("irqs", "iar", "esr", "mpidr", "syncs", "elr", "period", "ready"), v))


# --- PSCI ------------------------------------------------------------------------------

PSCI_GUEST = f"""
 ldr x19, ={RES:#x}
 mrs x5, mpidr_el1
 str x5, [x19, #0x00]                     // CPU 0's MPIDR_EL1
""" + cpu_on(1, "adr x2, secondary", 0x1234_5678_9ABC_DEF0) + """
 str x0, [x19, #0x08]                     // CPU_ON(1)
""" + affinity_info(1) + """
 str x0, [x19, #0x10]                     // AFFINITY_INFO(1) before CPU 1 ran
""" + cpu_on(1, "adr x2, secondary", 0) + """
 str x0, [x19, #0x18]                     // CPU_ON(1) again before CPU 1 ran
1: ldr x5, [x19, #0x118]                  // wait until CPU 1 has run its entry code
 cbz x5, 1b
""" + affinity_info(1) + """
 str x0, [x19, #0x20]                     // AFFINITY_INFO(1) after it ran
""" + affinity_info(2) + """
 str x0, [x19, #0x28]                     // AFFINITY_INFO(2), never started
""" + cpu_on(1, "adr x2, secondary", 0) + """
 str x0, [x19, #0x30]                     // CPU_ON(1) after it ran
""" + cpu_on(9, "adr x2, secondary", 0) + """
 str x0, [x19, #0x38]                     // CPU_ON(MPIDR 9): no such CPU
""" + cpu_on(2, "mov x2, #0x10", 0) + """
 str x0, [x19, #0x40]                     // CPU_ON(2) at 0x10: flash, not RAM
""" + affinity_info(2) + """
 str x0, [x19, #0x48]                     // AFFINITY_INFO(2) after the refused CPU_ON
 mov x5, #1
 str x5, [x19, #0x120]                    // tell CPU 1 to call CPU_OFF
 mov x6, #0
2: add x6, x6, #1
""" + affinity_info(1) + """
 cmp x0, #1
 b.ne 2b
 str x0, [x19, #0x50]                     // AFFINITY_INFO(1) after its CPU_OFF
 str x6, [x19, #0x58]                     // polls it took
""" + POWER_OFF + f"""
secondary:
 ldr x19, ={RES:#x}
 str x0, [x19, #0x100]                    // x0 at entry: the context id
 mrs x5, mpidr_el1
 str x5, [x19, #0x108]
 mrs x5, currentel
 str x5, [x19, #0x110]
 mrs x5, daif
 str x5, [x19, #0x128]
 mrs x5, sctlr_el1
 str x5, [x19, #0x130]
 mrs x5, spsel
 str x5, [x19, #0x138]
 adr x5, secondary
 str x5, [x19, #0x148]
 mov x5, #1
 str x5, [x19, #0x118]
1: ldr x5, [x19, #0x120]
 cbz x5, 1b
 ldr x0, =0x84000002                      // CPU_OFF: does not return on success
 hvc #0
 mov x5, #1
 str x5, [x19, #0x140]
 str x0, [x19, #0x150]
 b .
 .ltorg
"""


def test_psci_cpu_on_starts_secondary_and_reports_power_states(board):
    b = board(PSCI_GUEST, cpus=4)
    r = b.run()
    assert (r.status, r.reason) == (0, "PSCI SYSTEM_OFF")
    cpu0 = words(b, RES, 12)
    sec = words(b, RES + 0x100, 11)
    assert cpu0[0] == 0x8000_0000                       # CPU 0's MPIDR_EL1
    assert cpu0[1] == SUCCESS                           # CPU_ON(1)
    # CPU 0 keeps the core for its whole slice (100k instructions) after CPU_ON, so the
    # next calls, a few instructions later, always find CPU 1 not yet running: PSCI says
    # ON_PENDING for both AFFINITY_INFO (2) and a second CPU_ON (-5), not ON/ALREADY_ON.
    assert cpu0[2] == AFF_ON_PENDING
    assert cpu0[3] == ON_PENDING
    # CPU 1 ran at the entry point, at EL1h, MMU off, all of DAIF masked (reset state).
    assert sec[0] == 0x1234_5678_9ABC_DEF0              # x0 = context id
    assert sec[1] == 0x8000_0001                        # its own MPIDR_EL1
    assert sec[2] == 1 << 2                             # CurrentEL = EL1
    assert sec[5] == 0x3C0                              # DAIF
    assert sec[6] & 1 == 0                              # SCTLR_EL1.M
    assert sec[7] == 1                                  # SPSel: SP_EL1
    assert cpu0[4] == AFF_ON                            # after it ran
    assert cpu0[5] == AFF_OFF                           # CPU 2: never started
    assert cpu0[6] == ALREADY_ON                        # CPU_ON(1) once it is running
    assert cpu0[7] == INVALID_PARAMETERS                # MPIDR 9: no such CPU
    assert cpu0[8] == INVALID_ADDRESS                   # entry 0x10 is not in RAM
    assert cpu0[9] == AFF_OFF                           # the refused CPU_ON left CPU 2 off
    assert cpu0[10] == AFF_OFF                          # after CPU 1's CPU_OFF
    assert sec[8] == 0                                  # CPU_OFF never returned to CPU 1
    assert b.machine.vcpus[1].power.value == AFF_OFF and b.machine.vcpus[2].power.value == AFF_OFF


# --- SGIs ----------------------------------------------------------------------------

def sgi_guest(sender: int, receiver: int, bystander: int) -> str:
    """CPUs 0, 1 and 2 set up their GIC CPU interfaces and unmask IRQs; `sender` writes
    GICD_SGIR for SGI 5 with filter 0 and only `receiver` in the target list."""
    sgir = (0 << 24) | (1 << (16 + receiver)) | 5
    recv_slot = PER_CPU + receiver * PER_CPU_SIZE
    return f"""
 ldr x21, =0x08000000
 mov w22, #1
 str w22, [x21]                           // GICD_CTLR.Enable
""" + cpu_on(1, "adr x2, common", 0) + cpu_on(2, "adr x2, common", 0) + f"""
common:
""" + percpu_setup(1 << 5) + f"""
 msr daifclr, #2                          // IRQs unmasked
 mov x22, #1
 str x22, [x21, #0x38]                    // ready
 cmp x20, #{sender}
 b.ne not_sender
 ldr x23, ={PER_CPU:#x}
1: ldr x22, [x23, #{receiver * PER_CPU_SIZE + 0x38:#x}]   // receiver ready
 ldr x24, [x23, #{bystander * PER_CPU_SIZE + 0x38:#x}]    // bystander ready
 and x22, x22, x24
 cbz x22, 1b
 ldr x21, =0x08000000
 ldr w22, ={sgir:#x}
 str w22, [x21, #0xf00]                   // GICD_SGIR
not_sender:
 cbnz x20, park
 ldr x23, ={recv_slot:#x}
2: ldr x22, [x23]                         // CPU 0 waits for the receiver's IRQ
 cbz x22, 2b
 ldr x22, =300000                         // then runs on past a few slice switches, so
3: subs x22, x22, #1                      // a misrouted SGI would be taken somewhere
 b.ne 3b
""" + POWER_OFF + """
park:
 b park
""" + SYNC_HANDLER + IRQ_HANDLER + vectors() + "\n .ltorg\n"


@pytest.mark.parametrize("sender, receiver, bystander", [(0, 1, 2), (1, 0, 2)], ids=["cpu0-to-cpu1", "cpu1-to-cpu0"])
def test_sgi_reaches_only_its_target_with_source_cpu_in_iar(board, sender: int, receiver: int,
                                                              bystander: int) -> None:
    b = board(sgi_guest(sender, receiver, bystander), cpus=4)
    r = b.run()
    assert (r.status, r.reason) == (0, "PSCI SYSTEM_OFF")
    recv, send, other = slot(b, receiver), slot(b, sender), slot(b, bystander)
    assert recv["ready"] == send["ready"] == other["ready"] == 1
    assert recv["irqs"] == 1
    assert recv["iar"] == 5 | (sender << 10)            # SGI 5, CPUID = the sender
    assert send["irqs"] == 0 and other["irqs"] == 0     # target list named the receiver only


# --- per-CPU timers ------------------------------------------------------------------

TICKS = 5
TICK_LOG = 0x4020_0800        # + cpu * 0x80: CNTVCT_EL0 when armed, then at each tick
PERIOD = 62_500               # 1 ms at the board's 62.5 MHz counter

TIMER_IRQ_HANDLER = f"""
irq_handler:
""" + HANDLER_PROLOGUE + f"""
 ldr x10, =0x08010000
 ldr w11, [x10, #0x0c]     // GICC_IAR
 str x11, [x12, #0x08]
 and x9, x11, #0x3ff
 cmp x9, #27               // the virtual timer's PPI
 b.ne 9f
 ldr x9, [x12]
 add x9, x9, #1
 str x9, [x12]             // ticks so far
 mrs x13, cntvct_el0
 mrs x14, mpidr_el1
 and x14, x14, #0xff
 lsl x14, x14, #7
 add x14, x14, x9, lsl #3
 ldr x10, ={TICK_LOG:#x}
 str x13, [x10, x14]       // tick log[cpu][ticks]
 cmp x9, #{TICKS}
 b.hs 8f
 ldr x9, [x12, #0x30]
 msr cntv_tval_el0, x9     // re-arm: one more period from now
 b 9f
8: msr cntv_ctl_el0, xzr   // done: timer off
9: ldr x10, =0x08010000
 str w11, [x10, #0x10]     // GICC_EOIR
 eret
"""

TIMER_GUEST = """
 ldr x21, =0x08000000
 mov w22, #1
 str w22, [x21]
""" + "".join(cpu_on(n, "adr x2, common", 0) for n in (1, 2, 3)) + """
common:
""" + percpu_setup(1 << 27) + f"""
 cmp x20, #3
 b.eq park                                // CPU 3 never arms its timer
 add x22, x20, #1
 ldr x23, ={PERIOD:#x}
 mul x22, x22, x23                        // CPU n: a period of (n + 1) ms
 str x22, [x21, #0x30]
 ldr x23, ={TICK_LOG:#x}
 mrs x24, cntvct_el0
 add x23, x23, x20, lsl #7
 str x24, [x23]                           // tick log[cpu][0]: when armed
 msr cntv_tval_el0, x22
 mov x22, #1
 msr cntv_ctl_el0, x22                    // enable, unmasked
 msr daifclr, #2
1: wfi
 ldr x22, [x21]
 cmp x22, #{TICKS}
 b.lo 1b
 mov x22, #1
 str x22, [x21, #0x38]                    // done
 cbnz x20, park
 ldr x23, ={PER_CPU:#x}
2: ldr x22, [x23, #{1 * PER_CPU_SIZE + 0x38:#x}]
 ldr x24, [x23, #{2 * PER_CPU_SIZE + 0x38:#x}]
 and x22, x22, x24
 cbz x22, 2b
""" + POWER_OFF + """
park:
 b park
""" + SYNC_HANDLER + TIMER_IRQ_HANDLER + vectors() + "\n .ltorg\n"


def test_each_cpu_counts_its_own_virtual_timer_ticks(board):
    b = board(TIMER_GUEST, cpus=4)
    r = b.run()
    assert (r.status, r.reason) == (0, "PSCI SYSTEM_OFF")
    for cpu in (0, 1, 2):
        s = slot(b, cpu)
        period = (cpu + 1) * PERIOD
        assert (s["irqs"], s["iar"], s["period"]) == (TICKS, 27, period), (cpu, s)
        log = words(b, TICK_LOG + cpu * 0x80, TICKS + 1)
        gaps = [after - before for before, after in zip(log, log[1:])]
        # Each tick comes from this CPU's own timer: never sooner than its own period
        # after it was (re-)armed (CPU 0's 1 ms ticks must not reach CPU 2, at 3 ms).
        assert all(g >= period for g in gaps), (cpu, gaps)
    cpu3 = slot(b, 3)
    assert cpu3["irqs"] == 0 and words(b, TICK_LOG + 3 * 0x80, 1) == [0]


# --- SEA on a chosen CPU --------------------------------------------------------------

SEA_PA = 0x40FA_6000


def sea_guest(signal: str) -> str:
    """CPU 1 installs its vectors, unmasks IRQs, says it is ready (`CPU1 READY` on the
    UART and a flag), and loops until its SEA handler ran; CPU 0 waits for the flag,
    does `signal`, then waits for CPU 1 and runs on through a few slice switches."""
    return """
""" + cpu_on(1, "adr x2, common", 0) + """
common:
""" + percpu_setup(0) + f"""
 msr daifclr, #2
 cbz x20, cpu0
 ldr x22, =0x09000000
 adr x23, ready_msg
1: ldrb w24, [x23], #1
 cbz w24, 2f
 strb w24, [x22]
 b 1b
2: mov x22, #1
 str x22, [x21, #0x38]
3: ldr x22, [x21, #0x20]                  // until the SEA handler has run
 cbz x22, 3b
 mov x22, #2
 str x22, [x21, #0x38]
 b park
cpu0:
 ldr x23, ={PER_CPU + PER_CPU_SIZE:#x}
4: ldr x22, [x23, #0x38]
 cbz x22, 4b
 {signal}
5: ldr x22, [x23, #0x38]
 cmp x22, #2
 b.ne 5b
 ldr x22, =300000
6: subs x22, x22, #1
 b.ne 6b
""" + POWER_OFF + """
park:
 b park
ready_msg:
 .asciz "CPU1 READY\\n"
 .balign 4
""" + SYNC_HANDLER + IRQ_HANDLER + vectors() + "\n .ltorg\n"


@pytest.mark.parametrize("how", ["inject_sea-from-cpu0", "inject-spec-on-console"])
def test_injected_sea_is_taken_by_the_named_cpu(board, how: str) -> None:
    if how == "inject_sea-from-cpu0":
        # Injected while CPU 0 is on the core: CPU 1 must take it when it next runs.
        b = board(sea_guest("hvc #0x99"), cpus=4)
        m = b.machine
        m.hvc_handlers[0x99] = lambda cpu: m.defer(lambda: m.inject_sea(SEA_PA, cpu=1), "test injection")
    else:
        b = board(sea_guest("nop"), cpus=4)
        m = b.machine
        schedule(m, parse_inject_spec(r"sea:pa=0x40fa6000,cpu=1,on=^CPU1 READY"))
    r = b.run()
    assert (r.status, r.reason) == (0, "PSCI SYSTEM_OFF")
    assert "CPU1 READY" in b.output
    cpu0, cpu1 = slot(b, 0), slot(b, 1)
    assert cpu1["syncs"] == 1
    assert cpu1["esr"] == ESR_SEA_EL1
    assert cpu1["mpidr"] == 0x8000_0001                 # the handler ran on CPU 1
    assert cpu0["syncs"] == 0 and cpu0["esr"] == 0       # CPU 0 took nothing
    assert (m.vcpus[0].seas_taken, m.vcpus[1].seas_taken) == (0, 1)
    # The CPER in source 0's error status block names the injected address.
    block = m.sources.by_id(SOURCE_SEA).block_address()
    assert m.mem.read(block, 172) == cper.memory_error_record(SEA_PA)
    assert struct.unpack_from("<Q", m.mem.read(block, 172), 108)[0] == SEA_PA


# --- determinism ---------------------------------------------------------------------

DET_GUEST = """
 ldr x21, =0x08000000
 mov w22, #1
 str w22, [x21]
""" + cpu_on(1, "adr x2, common", 0) + """
common:
""" + percpu_setup(1 << 27) + f"""
 ldr x25, =0x09000000
 mov x26, #0                              // iterations
loop:
 add x22, x20, #'A'                       // "A"/"B" <16 hex digits of CNTVCT_EL0>
 strb w22, [x25]
 mrs x27, cntvct_el0
 mov x23, #60
1: lsr x24, x27, x23
 and x24, x24, #0xf
 add x22, x24, #'0'
 add x28, x24, #87                        // 'a' - 10
 cmp x24, #10
 csel x24, x22, x28, lo
 strb w24, [x25]
 subs x23, x23, #4
 b.pl 1b
 mov w22, #10                            // '\\n'
 strb w22, [x25]
 add x22, x20, #1                         // sleep (n + 1) * 37 us on the CPU's own timer
 mov x23, #2311
 mul x22, x22, x23
 msr cntv_tval_el0, x22
 mov x22, #1
 msr cntv_ctl_el0, x22
2: wfi                                    // IRQs stay masked: WFI wakes on the pending PPI
 mrs x22, cntv_ctl_el0
 tbz x22, #2, 2b                          // ISTATUS
 msr cntv_ctl_el0, xzr
 add x26, x26, #1
 cmp x26, #40
 b.lo loop
 mov x22, #1
 str x22, [x21, #0x38]
 cbnz x20, park
 ldr x23, ={PER_CPU + PER_CPU_SIZE:#x}
3: ldr x22, [x23, #0x38]
 cbz x22, 3b
""" + POWER_OFF + """
park:
 b park
 .ltorg
""" + SYNC_HANDLER + IRQ_HANDLER + vectors() + "\n .ltorg\n"


def test_deterministic_two_cpus_repeat_exactly(board):
    runs = []
    for _ in range(2):
        b = board(DET_GUEST, cpus=2, deterministic=True)
        r = b.run()
        assert (r.status, r.reason) == (0, "PSCI SYSTEM_OFF")
        runs.append((b.console.getvalue(), r.instructions))
    (out1, n1), (out2, n2) = runs
    assert out1 == out2
    assert n1 == n2
    # Both CPUs printed 40 lines each, every one with its counter strictly increasing.
    text = out1.decode()
    for cpu in "AB":
        values = [int(v, 16) for v in re.findall(rf"^{cpu}([0-9a-f]{{16}})$", text, re.MULTILINE)]
        assert len(values) == 40, text[-500:]
        assert all(a < b for a, b in zip(values, values[1:]))


# --- Linux ---------------------------------------------------------------------------

INITRAMFS = REPO / "guest_images" / "build" / "linux" / "initramfs.cpio"
SERIES = ["6.1", "6.12"]


@pytest.fixture(scope="module")
def initramfs() -> Path:
    if not INITRAMFS.exists():
        subprocess.run(["make", "-C", str(REPO / "guest_images" / "linux"), f"PYTHON={sys.executable}"], check=True)
    return INITRAMFS


def boot_smp_linux(series: str, initrd: Path, append: str, *, inject: str | None = None,
                   poison_on: str | None = None, cpus: int = 4, deterministic: bool = False):
    """Boot Debian's `series` kernel on a `cpus`-CPU board in-process; (result, console, machine)."""
    import io

    from armras.board.machine import Machine, MachineConfig
    from armras.drive.inject import schedule_poison_on
    from armras.guests.linux import boot_linux

    kernel = debian_kernel(series)
    console = io.BytesIO()
    # A 4-CPU boot to power-off takes 5-25 s here; 120 s leaves room for a loaded machine.
    m = Machine(MachineConfig(console=console, cpus=cpus, timeout=120.0,
                                  deterministic=deterministic))
    try:
        boot_linux(m, kernel, initrd, append)
        _fail_on_oops(m)
        if poison_on is not None:
            schedule_poison_on(m, poison_on)
        if inject is not None:
            schedule(m, parse_inject_spec(inject))
        try:
            r = m.run()
        except Exception as e:
            raise AssertionError(f"{e}\n--- console tail ---\n{console.getvalue().decode(errors='replace')[-3000:]}")
    finally:
        m.close()
    # The kernel's console ends lines with CR LF; /init's stdout (ONLCR) too.
    return r, console.getvalue().decode("utf-8", "replace").replace("\r\n", "\n"), m


def _fail_on_oops(m) -> None:
    """An Oops that does not panic leaves the guest hung until the timeout (a stuck
    spinlock, RCU stalls): end the run one guest second after the kernel reports it."""
    from armras.arch.cpu import GuestFault

    def oops(match: re.Match[str]) -> None:
        line = match.group(0)

        def fail() -> None:
            raise GuestFault(f"Linux oopsed: {line}")

        m.at_guest_time(m.counter.guest_seconds() + 1.0, fail, "kernel oops")

    m.on_console(r"Internal error: Oops.*|Unable to handle kernel .*", oops, "Linux kernel oops")


def assert_clean(out: str) -> None:
    for bad in ("Kernel panic", "Oops", "SMPTEST ERROR", "SEATEST ERROR", "INIT ERROR", "BUG:"):
        assert bad not in out, f"{bad!r} on the console:\n{out[-3000:]}"


@pytest.mark.kernel
@pytest.mark.parametrize("series", SERIES)
def test_linux_brings_up_four_cpus_and_hotplugs_cpu1(series: str, initramfs: Path) -> None:
    r, out, m = boot_smp_linux(series, initramfs, "console=ttyAMA0 smptest")
    assert r.status == 0, out[-3000:]
    in_order(out, [
        r"SMP: Total of 4 processors activated",
        r"Run /init as init process",
        r"^SMPTEST processors=4 online=0-3$",
        r"psci: CPU1 killed \(polled \d+ ms\)",       # the kernel saw AFFINITY_INFO(1) = OFF
        r"^SMPTEST cpu1 offline online=0,2-3$",
        r"CPU1: Booted secondary processor 0x0000000001 ",   # PSCI CPU_ON again, MPIDR Aff0 = 1
        r"^SMPTEST cpu1 online online=0-3$",
    ])
    assert_clean(out)
    assert [v.power.name for v in m.vcpus] == ["ON"] * 4      # CPU 1 came back


@pytest.mark.kernel
@pytest.mark.parametrize("series", SERIES)
def test_linux_reports_arm_processor_error_of_cpu3(series: str, initramfs: Path) -> None:
    r, out, _ = boot_smp_linux(series, initramfs, "console=ttyAMA0 seatest",
                               inject="arm:cpu=3,type=cache,on=INIT-OK")
    assert r.status == 0, out[-3000:]
    in_order(out, [
        r"SMP: Total of 4 processors activated",
        r"INIT-OK",
        r"Hardware error from APEI Generic Hardware Error Source: 1$",
        r"section_type: ARM processor error",
        r"Multiprocessor Affinity Register \(MPIDR\): 0x0000000080000003$",
        r"error_type: 0x02: cache error",
        r"SEATEST DONE",
    ])
    assert_clean(out)



@pytest.mark.kernel
@pytest.mark.parametrize("series", SERIES)
def test_linux_survives_ueo_serror_taken_by_cpu3(series: str, initramfs: Path) -> None:
    # CPU 3 is idle in WFI when the SError is made pending for it: it wakes, takes it
    # (Linux: a UEO is not fatal, nothing is printed) and /init on another CPU carries on.
    r, out, m = boot_smp_linux(series, initramfs, "console=ttyAMA0 seatest",
                               inject="serror:aet=ueo,cpu=3,on=^SEATEST victim ")
    assert r.status == 0, out[-3000:]
    in_order(out, [r"SMP: Total of 4 processors activated", r"CPU features: detected: RAS Extension Support",
                   r"SEATEST victim ", r"SEATEST DONE"])
    assert "SError Interrupt" not in out
    assert_clean(out)
    assert [v.serrors_taken for v in m.vcpus] == [0, 0, 0, 1]


# Deterministic: 6.12 once oopsed here in fpsimd_save_state, in some interleavings only
# (it ran stale translations of its patched text: tests/test_code_patching.py); a fixed
# interleaving keeps the test meaning the same every run.
@pytest.mark.kernel
@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_linux_recovers_from_sea_taken_on_cpu2(series: str, initramfs: Path) -> None:
    r, out, m = boot_smp_linux(series, initramfs, "console=ttyAMA0 seatest seatest_cpu=2",
                               poison_on=r"PADDR=(0x[0-9a-f]+)", deterministic=True)
    assert r.status == 0, out[-3000:]
    found = in_order(out, [
        r"SMP: Total of 4 processors activated",
        r"SEATEST victim va=0x[0-9a-f]+ PADDR=(0x[0-9a-f]+) cpu=2$",
        r"Hardware error from APEI Generic Hardware Error Source: 0$",
        r"physical_address: (0x[0-9a-f]+)",
        r"Memory failure: (0x[0-9a-f]+): recovery action for dirty LRU page: Recovered",
        r"SEATEST SIGBUS si_code=4 \(BUS_MCEERR_AR=4\)",
        r"SEATEST DONE",
    ])
    page = int(found[1].group(1), 16) & ~0xFFF
    assert int(found[3].group(1), 16) == page
    assert int(found[4].group(1), 16) == page >> 12
    assert_clean(out)
    assert [v.seas_taken for v in m.vcpus] == [0, 0, 1, 0]    # CPU 2, where /init ran, took it
