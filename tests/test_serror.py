"""Asynchronous SError interrupts with RAS syndromes, and the RAS extension's registers.

Expected values are the Arm ARM's (DDI 0487), written out here, never taken from armras:
* ESR_EL1 for an SError interrupt (D17.2.37): EC 0x2F, IL (bit 25) = 1, IDS (bit 24) = 0,
  AET bits [12:10] (UC 0b000, UEU 0b001, UEO 0b010, UER 0b011, CE 0b110), DFSC bits [5:0]
  0b010001 (asynchronous SError): 0xbe000011 UC, 0xbe000411 UEU, 0xbe000811 UEO,
  0xbe000c11 UER, 0xbe001811 CE.
* Vector offsets: SError is +0x180 from the current EL with SP_ELx (0x200) or a lower EL
  using AArch64 (0x400): slots 0x380 and 0x580. ELR_EL1 is the preferred return address
  of an asynchronous exception: the first instruction that did not run.
* PSTATE.A (SPSR bit 8) masks an SError taken to EL1 at EL0 and EL1; a masked SError
  stays pending and is taken once A is cleared; WFI wakes on it even while masked.
* ID_AA64PFR0_EL1.RAS, bits [31:28]: 1 = the RAS extension. DISR_EL1 is S3_0_C12_C1_1,
  ERRIDR_EL1 S3_0_C5_C3_0 (NUM = 0: no error records), ERRSELR_EL1 S3_0_C5_C3_1,
  ERXSTATUS_EL1 S3_0_C5_C4_2; all EL1 registers (UNDEFINED at EL0: EC 0, IL, 0x02000000).
"""
from __future__ import annotations

import logging

import pytest

from armras.arch.cpu import AET_CE, AET_UC, AET_UEO, AET_UER, SERROR_AETS
from armras.arch.hooks import ID_AA64PFR0_EL1
from armras.errors import ArmrasError
from armras.drive.inject import parse_inject_spec, perform, schedule
from armras.firmware.acpi.hest import parse_hest_entries
from armras.ras.cper import memory_error_record
from armras.ras.sources import Notify, SourceSpec
from conftest import LOAD_ADDRESS

ESR = {"uc": 0xBE000011, "ue": 0xBE000411, "ueo": 0xBE000811, "uer": 0xBE000C11, "ce": 0xBE001811}
ESR_UNDEF = 0x02000000
SPSR_DAIF = 0x3C0
RES = 0x4020_0000          # results of the SMP guest, far from the code

POWER_OFF = """
 ldr x0, =0x84000008
 hvc #0
 b .
"""

# The handlers use x10-x13 and x19-x25 only; the test bodies the rest.
#   SError (every slot): x10 ESR_EL1, x11 ELR_EL1, x12 SPSR_EL1, x13 the slot, x19 += 1;
#                        returns to ELR_EL1 unchanged (asynchronous: nothing to skip).
#   synchronous:         x20 ESR_EL1, x21 ELR_EL1, x25 += 1; an SVC ends the test at
#                        `finish` (EL1), anything else (UNDEF) returns past the instruction.
#   IRQ/FIQ:             unexpected: power off with status 3.
VECTORS = """
 .balign 0x800
vectors:
""" + "".join(f"""
 .balign 0x80
 b {kind}_{slot:#x}
""" for slot in range(0, 0x800, 0x200) for kind in ("sync", "irq", "fiq", "serror")) + "".join(f"""
sync_{slot:#x}:
 mrs x20, esr_el1
 mrs x21, elr_el1
 add x25, x25, #1
 lsr x22, x20, #26
 cmp x22, #0x15
 b.eq finish
 add x22, x21, #4
 msr elr_el1, x22
 eret
irq_{slot:#x}:
fiq_{slot:#x}:
 mov x1, #3
 b power_off
serror_{slot:#x}:
 mrs x10, esr_el1
 mrs x11, elr_el1
 mrs x12, spsr_el1
 mov x13, #{slot + 0x180:#x}
 add x19, x19, #1
 eret
""" for slot in range(0, 0x800, 0x200))


def guest(body: str, *labels: str) -> str:
    """A guest running `body` at EL1h (DAIF masked, as out of reset); the offsets of
    `labels` (addresses the tests check ELR against) sit in a table after the first branch."""
    table = "".join(f" .word {name} - _start\n" for name in labels)
    return f"""
 b 9f
{table}9:
 adr x0, vectors
 msr vbar_el1, x0
 ldr x0, =0x40400000
 mov sp, x0
 ldr x0, =0x40300000
 msr sp_el0, x0
 mov x19, #0
 mov x25, #0
{body}
finish:
 mov x1, #0
power_off:
""" + POWER_OFF + VECTORS + "\n .ltorg\n"


def address(b, index: int) -> int:
    """The address of guest()'s `labels[index]`."""
    return LOAD_ADDRESS + int.from_bytes(b.code[4 + 4 * index:8 + 4 * index], "little")


def inject_on_hvc(m, *aets: int, cpu: int | None = None) -> None:
    """`hvc #0x99` makes the SErrors pending right after it (the CPU stops there)."""
    def inject() -> None:
        for aet in aets:
            m.inject_serror(aet, cpu=cpu)
    m.hvc_handlers[0x99] = lambda _cpu: m.defer(inject, "test SError")


@pytest.mark.parametrize("aet", list(SERROR_AETS))
def test_unmasked_serror_is_taken_at_once_with_its_ras_syndrome(board, aet: str) -> None:
    body = """
 msr daifclr, #4            // PSTATE.A = 0
 hvc #0x99
wait:
 cbz x19, wait
"""
    b = board(guest(body, "wait"))
    m = b.machine
    inject_on_hvc(m, SERROR_AETS[aet])
    r = b.run()
    assert (r.status, r.reason) == (0, "PSCI SYSTEM_OFF")
    assert b.x(10) == ESR[aet]
    assert b.x(11) == address(b, 0)     # the first instruction after the HVC
    assert b.x(12) & (0x3CF) == 0x2C5              # taken from EL1h with A clear, D/I/F masked
    assert b.x(13) == 0x380                        # current EL with SP_ELx, SError
    assert b.x(19) == 1 and b.x(25) == 0
    assert m.vcpus[0].serrors_taken == 1 and m.vcpus[0].serror is None


def test_masked_serror_is_held_until_daifclr(board) -> None:
    body = """
 hvc #0x99                  // PSTATE.A is still 1 (reset state)
 mov x15, #0
1: add x15, x15, #1
 cmp x15, #1000
 b.lo 1b
 mov x16, x19               // nothing taken yet
 msr daifclr, #4
after:
 mov x17, x19
"""
    b = board(guest(body, "after"))
    m = b.machine
    inject_on_hvc(m, AET_UEO)
    r = b.run()
    assert r.status == 0
    assert b.x(15) == 1000 and b.x(16) == 0       # the masked code ran in full first
    assert b.x(17) == 1 and b.x(19) == 1
    assert b.x(11) == address(b, 0)    # right after the unmask
    assert b.x(12) & SPSR_DAIF == 0x2C0            # SPSR: A already clear
    assert b.x(10) == ESR["ueo"]


def test_serror_pending_at_el1_is_taken_by_the_first_el0_instruction(board) -> None:
    body = """
 hvc #0x99                  // pending while EL1 masks it
 adr x4, el0_code
 msr elr_el1, x4
 msr spsr_el1, xzr          // EL0t, A clear
 eret
el0_code:
 nop
1: cbz x19, 1b
 svc #0
"""
    b = board(guest(body, "el0_code"))
    inject_on_hvc(b.machine, AET_CE)
    assert b.run().status == 0
    assert b.x(13) == 0x580                        # lower EL using AArch64, SError
    assert b.x(11) == address(b, 0)
    assert b.x(12) == 0                            # SPSR: EL0t, nothing masked
    assert b.x(10) == ESR["ce"]


def test_pstate_a_masks_the_serror_at_el0_too(board) -> None:
    body = """
 hvc #0x99
 adr x4, el0_code
 msr elr_el1, x4
 mov x4, #0x100             // EL0t with PSTATE.A = 1
 msr spsr_el1, x4
 eret
el0_code:
 mov x15, #0
1: add x15, x15, #1
 cmp x15, #1000
 b.lo 1b
 mov x16, x19
 svc #0                     // to EL1 (DAIF masked): `finish` unmasks A there
"""
    b = board(guest(body).replace("finish:\n", "finish:\n msr daifclr, #4\ntaken:\n"))
    inject_on_hvc(b.machine, AET_CE)
    assert b.run().status == 0
    assert b.x(15) == 1000 and b.x(16) == 0        # EL0 with A set did not take it
    assert b.x(19) == 1 and b.x(13) == 0x380       # taken at EL1 once A was cleared there


def test_wfi_wakes_for_a_pending_serror(board) -> None:
    body = """
 msr daifclr, #4
 wfi                        // no timer armed: only the SError can end it
after_wfi:
 mov x16, x19
"""
    b = board(guest(body, "after_wfi"))
    m = b.machine
    m.at_guest_time(0.25, lambda: m.inject_serror(AET_CE), "test SError")
    r = b.run()
    assert r.status == 0 and r.guest_seconds >= 0.25
    assert b.x(11) == address(b, 0) and b.x(16) == 1


def test_wfi_wakes_for_a_masked_serror_which_stays_pending(board) -> None:
    body = """
 wfi                        // PSTATE.A = 1: the SError wakes the CPU but is not taken
 mov x16, x19
 msr daifclr, #4
taken:
 mov x17, x19
"""
    b = board(guest(body, "taken"))
    m = b.machine
    m.at_guest_time(0.25, lambda: m.inject_serror(AET_UC), "test SError")
    assert b.run().status == 0
    assert b.x(16) == 0 and b.x(17) == 1
    assert b.x(11) == address(b, 0) and b.x(10) == ESR["uc"]


def test_second_injection_merges_into_the_pending_serror(board, caplog: pytest.LogCaptureFixture) -> None:
    body = """
 hvc #0x99                  // CE, then UC, while A masks both
 msr daifclr, #4
 nop
"""
    b = board(guest(body))
    m = b.machine
    inject_on_hvc(m, AET_CE, AET_UC)
    with caplog.at_level(logging.WARNING):
        assert b.run().status == 0
    assert b.x(19) == 1                            # one SError, not a queue of two
    assert b.x(10) == ESR["uc"]                    # reporting the more severe error
    assert m.vcpus[0].serrors_taken == 1
    merges = [r.getMessage() for r in caplog.records if "merges" in r.getMessage()]
    assert len(merges) == 1 and "aet=ce" in merges[0] and "aet=uc will be taken" in merges[0]


def test_injection_names_an_existing_running_cpu(board) -> None:
    b = board(guest(""))
    with pytest.raises(ArmrasError, match=r"cpu=1: the board has 1 CPU"):
        b.machine.inject_serror(AET_CE, cpu=1)


def test_inject_spec_serror_reaches_the_guest(board) -> None:
    body = """
 msr daifclr, #4
1: cbz x19, 1b
"""
    b = board(guest(body))
    schedule(b.machine, parse_inject_spec("serror:aet=uer,insn=5000"))
    assert b.run().status == 0
    assert b.x(10) == ESR["uer"] and b.x(19) == 1


def test_ras_registers_as_the_guest_sees_them(board, hooks_kind: str) -> None:
    body = """
 mrs x18, id_aa64pfr0_el1
 ldr x17, =0xffffffff80000012
 msr s3_0_c12_c1_1, x17     // DISR_EL1 (bits [63:32] and [30:25] are RES0)
 mrs x2, s3_0_c12_c1_1
 mrs x3, s3_0_c5_c3_0       // ERRIDR_EL1
 msr s3_0_c5_c3_1, x17      // ERRSELR_EL1
 mrs x4, s3_0_c5_c3_1
 mrs x5, s3_0_c5_c4_2       // ERXSTATUS_EL1
 hint #16                   // ESB
 msr s3_0_c12_c1_1, xzr     // as Linux's cpu_clear_disr
 mrs x6, s3_0_c12_c1_1
 mov x9, x25                // no exception so far
 adr x7, el0_code
 msr elr_el1, x7
 msr spsr_el1, xzr
 eret
el0_code:
 mrs x7, s3_0_c12_c1_1      // EL1 registers: UNDEFINED at EL0
 mov x14, x20
 mov x20, #0
 mrs x8, id_aa64pfr0_el1
 mov x15, x20
 svc #0
"""
    b = board(guest(body))
    m = b.machine
    assert m.blocks.native == m.sysregs.native == (hooks_kind == "native")
    unicorn_pfr0 = m.uc.cpr_read(*ID_AA64PFR0_EL1)  # Unicorn's own value (RAS = 0)
    assert (unicorn_pfr0 >> 28) & 0xF == 0
    assert b.run().status == 0
    assert b.x(18) == unicorn_pfr0 | 1 << 28        # RAS = 1, every other field as Unicorn has it
    assert b.x(2) == 0x80000012                    # DISR_EL1 holds what was written, RES0 bits read 0
    assert b.x(3) == 0                             # ERRIDR_EL1.NUM = 0
    assert b.x(4) == 0 and b.x(5) == 0             # RAZ/WI
    assert b.x(6) == 0
    assert b.x(9) == 0                             # none of it trapped at EL1
    assert b.x(14) == ESR_UNDEF and b.x(15) == ESR_UNDEF
    assert b.x(25) == 3                            # two UNDEFs and the SVC


def test_held_serror_with_native_and_python_hooks(board, hooks_kind: str) -> None:
    test_masked_serror_is_held_until_daifclr(board)


SMP_GUEST = f"""
 adr x0, vectors
 msr vbar_el1, x0
 mov x0, #0xa0
 msr s3_0_c12_c1_1, x0      // CPU 0's DISR_EL1
 ldr x0, =0xC4000003        // PSCI CPU_ON(1, secondary)
 mov x1, #1
 adr x2, secondary
 mov x3, #0
 hvc #0
 ldr x5, ={RES:#x}
1: ldr x6, [x5, #0x78]       // CPU 1 ready
 cbz x6, 1b
 hvc #0x99                  // the SError for CPU 1
2: ldr x6, [x5, #0x78]
 cmp x6, #2
 b.ne 2b
 mrs x6, s3_0_c12_c1_1
 str x6, [x5, #0x08]
 str x19, [x5, #0x10]       // SErrors CPU 0 took
finish:
 mov x1, #0
power_off:
""" + POWER_OFF + f"""
secondary:
 adr x0, vectors
 msr vbar_el1, x0
 ldr x0, =0x40500000
 mov sp, x0
 mov x19, #0
 mov x0, #0xb1
 msr s3_0_c12_c1_1, x0      // CPU 1's DISR_EL1
 ldr x5, ={RES:#x}
 msr daifclr, #4
 mov x6, #1
 str x6, [x5, #0x78]
3: wfi
 cbz x19, 3b
 str x10, [x5, #0x40]
 str x11, [x5, #0x48]
 mrs x6, s3_0_c12_c1_1
 str x6, [x5, #0x50]
 mov x6, #2
 str x6, [x5, #0x78]
4: wfi
 b 4b
""" + VECTORS + "\n .ltorg\n"


def test_serror_goes_to_the_named_cpu_and_disr_is_per_cpu(board) -> None:
    b = board(SMP_GUEST, cpus=2)
    m = b.machine
    inject_on_hvc(m, AET_CE, cpu=1)
    r = b.run()
    assert (r.status, r.reason) == (0, "PSCI SYSTEM_OFF")
    mem = m.mem
    assert mem.read_u64(RES + 0x40) == ESR["ce"]   # CPU 1 took it, from WFI
    assert mem.read_u64(RES + 0x10) == 0           # CPU 0 took nothing
    assert mem.read_u64(RES + 0x08) == 0xA0        # each CPU kept its own DISR_EL1
    assert mem.read_u64(RES + 0x50) == 0xB1
    assert [v.serrors_taken for v in m.vcpus] == [0, 1]


# --- an SError with a GHES record: HEST notification type 9 (ARMv8 SEI) ---------------------
# Values from the specs, written out: ACPI 6.4 Table 18.14 (notification type 9 = ARMv8 SEI),
# ACPI 6.4 18.3.2.7.1 Generic Error Status Block (Block Status u32 at 0: bit 0 uncorrectable,
# bit 1 correctable; Error Severity u32 at 16: 0 recoverable, 1 fatal, 2 corrected), a v3
# Generic Error Data Entry of 72 bytes after it, and the UEFI N.2.5 memory error section's
# Physical Address at its offset 16 (so at 20 + 72 + 16 = 108 in the block).
SEI_HEST = (SourceSpec(0, Notify.SEA), SourceSpec(7, Notify.SEI))
SEI_PA = 0x4050_0000
# CPER severity -> (Error Severity, Block Status, the SError's AET).
SEI_GRADES = {"recoverable": (0, 0x1, "uer"), "fatal": (1, 0x1, "uc"), "corrected": (2, 0x2, "ce")}


def sei_block(m) -> bytes:
    """The SEI source's error status block, found as the guest finds it: HEST -> register -> block."""
    hest = [e for e in parse_hest_entries(m.acpi.table("HEST")) if e.source_id == 7][0]
    assert hest.notify_type == 9
    register = hest.error_status_address.address
    block = int.from_bytes(m.mem.read(register, 8), "little")
    return m.mem.read(block, 128)


@pytest.mark.parametrize("severity", list(SEI_GRADES))
def test_sei_source_record_accompanies_the_serror(board, severity: str) -> None:
    body = """
 msr daifclr, #4
1: cbz x19, 1b
"""
    b = board(guest(body), hest=SEI_HEST)
    schedule(b.machine, parse_inject_spec(f"sei:pa={SEI_PA:#x},severity={severity},insn=5000"))
    assert b.run().status == 0
    error_severity, block_status, aet = SEI_GRADES[severity]
    assert b.x(10) == ESR[aet] and b.x(19) == 1 and b.x(13) == 0x380
    block = sei_block(b.machine)
    assert int.from_bytes(block[0:4], "little") == block_status
    assert int.from_bytes(block[16:20], "little") == error_severity
    assert int.from_bytes(block[108:116], "little") == SEI_PA


def test_sei_record_is_written_before_a_masked_serror_is_taken(board) -> None:
    # Firmware records first: the block is already full while the SError waits for PSTATE.A.
    body = """
 hvc #0x98                  // the host injects here, with A still masked
 mov x16, x19
 msr daifclr, #4
1: cbz x19, 1b
"""
    b = board(guest(body), hest=SEI_HEST)
    m = b.machine
    seen: list[bytes] = []

    def inject(_cpu) -> None:
        m.defer(lambda: (m.report(memory_error_record(SEI_PA), notify=Notify.SEI), seen.append(sei_block(m))),
                "test SEI")
    m.hvc_handlers[0x98] = inject
    assert b.run().status == 0
    assert b.x(16) == 0 and b.x(19) == 1 and b.x(10) == ESR["uer"]
    assert int.from_bytes(seen[0][108:116], "little") == SEI_PA


def test_sei_injection_needs_an_sei_source(board) -> None:
    b = board(guest(""))
    with pytest.raises(ArmrasError, match=r"no SEI-notified error source .*describe one with --hest"):
        perform(b.machine, parse_inject_spec(f"sei:pa={SEI_PA:#x}"))


# --- ESB: the Error Synchronization Barrier defers a masked SError into DISR_EL1 --------------
# Arm ARM (DDI 0487) C6.2 ESB and D19 DISR_EL1: executed while a physical SError is pending and
# masked (PSTATE.A = 1), ESB defers it: DISR_EL1.A (bit 31) = 1, DISR_EL1[24:0] = the SError's
# syndrome (IDS, AET [12:10], EA, DFSC), and it is no longer pending: clearing PSTATE.A then
# takes nothing. ESB is HINT #16 (0xd503221f); DISR_EL1 is S3_0_C12_C1_1.
DISR_DEFERRED = {"uer": 0x80000C11, "ce": 0x80001811, "uc": 0x80000011}


@pytest.mark.parametrize("aet", list(DISR_DEFERRED))
def test_esb_defers_a_masked_serror_into_disr(board, aet: str) -> None:
    body = """
 hvc #0x99                  // pending while PSTATE.A masks it
 mrs x14, s3_0_c12_c1_1     // DISR_EL1 before: 0
 hint #16                   // ESB
 mrs x15, s3_0_c12_c1_1     // after: A and the syndrome
 msr daifclr, #4
 mov x16, #0
1: add x16, x16, #1
 cmp x16, #1000
 b.lo 1b
 mov x17, x19               // no SError was taken
"""
    b = board(guest(body))
    m = b.machine
    inject_on_hvc(m, SERROR_AETS[aet])
    assert b.run().status == 0
    assert b.x(14) == 0 and b.x(15) == DISR_DEFERRED[aet]
    assert b.x(16) == 1000 and b.x(17) == 0 and b.x(19) == 0
    assert m.vcpus[0].serror is None and m.vcpus[0].serrors_deferred == 1
    assert not m.esb.active                     # nothing pending: no more per-instruction watch


def test_esb_without_a_pending_serror_changes_nothing(board) -> None:
    body = """
 hint #16                   // ESB
 mrs x15, s3_0_c12_c1_1
 hvc #0x99
 msr daifclr, #4
1: cbz x19, 1b
"""
    b = board(guest(body))
    inject_on_hvc(b.machine, AET_CE)
    assert b.run().status == 0
    assert b.x(15) == 0 and b.x(19) == 1 and b.x(10) == ESR["ce"]
    assert b.machine.esb.armed == 1          # watched only while the SError waited (before daifclr)


def test_esb_at_el0_with_pstate_a_set_defers_too(board) -> None:
    body = """
 hvc #0x99
 adr x4, el0_code
 msr elr_el1, x4
 mov x4, #0x100             // EL0t with PSTATE.A = 1
 msr spsr_el1, x4
 eret
el0_code:
 hint #16                   // ESB
 svc #0                     // to EL1: `finish` unmasks A; nothing is left to take
"""
    b = board(guest(body).replace("finish:\n", "finish:\n mrs x15, s3_0_c12_c1_1\n msr daifclr, #4\n nop\n"))
    inject_on_hvc(b.machine, AET_UER)
    assert b.run().status == 0
    assert b.x(15) == 0x80000C11 and b.x(19) == 0


# --- ESR decoding in crash reports: mutants of armras/arch/cpu.py describe_esr ----------

@pytest.mark.parametrize("esr, text", [
    # Arm ARM D17.2.37 ESR_ELx: EC [31:26], IL [25], ISS [24:0]; EC values from its table.
    (0x0000_0000, "ESR 0x00000000 EC 0x0 (unknown/undefined instruction)"),
    (0x1E00_0000, "ESR 0x1e000000 EC 0x7 (FP/SIMD access)"),
    (0x5600_0000, "ESR 0x56000000 EC 0x15 (SVC)"),
    (0x5A00_0000, "ESR 0x5a000000 EC 0x16 (HVC)"),
    (0x5E00_0000, "ESR 0x5e000000 EC 0x17 (SMC)"),
    (0x6200_0000, "ESR 0x62000000 EC 0x18 (trapped MSR/MRS)"),
    (0x8200_0010, "ESR 0x82000010 EC 0x20 (instruction abort (lower EL)) FSC 0x10"),
    (0x8600_0410, "ESR 0x86000410 EC 0x21 (instruction abort (same EL)) FSC 0x10 FnV"),
    (0x8A00_0000, "ESR 0x8a000000 EC 0x22 (PC alignment)"),
    (0x9200_0050, "ESR 0x92000050 EC 0x24 (data abort (lower EL)) FSC 0x10"),
    (0x9600_0410, "ESR 0x96000410 EC 0x25 (data abort (same EL)) FSC 0x10 FnV"),
    (0x9A00_0000, "ESR 0x9a000000 EC 0x26 (SP alignment)"),
    (0xBE00_0000, "ESR 0xbe000000 EC 0x2f (SError) AET UC"),
    (0xBE00_0400, "ESR 0xbe000400 EC 0x2f (SError) AET UEU"),
    (0xBE00_0800, "ESR 0xbe000800 EC 0x2f (SError) AET UEO"),
    (0xBE00_0C00, "ESR 0xbe000c00 EC 0x2f (SError) AET UER"),
    (0xBE00_1800, "ESR 0xbe001800 EC 0x2f (SError) AET CE"),
    (0xBE00_1000, "ESR 0xbe001000 EC 0x2f (SError) AET 0b100"),     # reserved AET
    (0xBF00_0000, "ESR 0xbf000000 EC 0x2f (SError)"),                # IDS: implementation defined
    (0xF200_0000, "ESR 0xf2000000 EC 0x3c (BRK)"),
    (0x4E00_0000, "ESR 0x4e000000 EC 0x13 (other)"),
])
def test_esr_descriptions(esr: int, text: str) -> None:
    from armras.arch.cpu import describe_esr

    assert describe_esr(esr) == text


def test_serror_aet_names_and_the_el1h_stack_pointer_choice() -> None:
    # ESR_ELx.ISS AET [12:10] for an SError: 000 UC, 001 UEU, 010 UEO, 011 UER, 110 CE;
    # the names are --inject's. PSTATE.M[3:0]: EL in [3:2], SP select in [0] (Arm ARM C5.2.18).
    from armras.arch.cpu import _uses_sp_el1, serror_aet_name

    names = {aet: serror_aet_name(0xBE00_0000 | aet << 10) for aet in range(8)}
    assert names == {0: "uc", 1: "ue", 2: "ueo", 3: "uer", 4: "0b100", 5: "0b101", 6: "ce", 7: "0b111"}
    assert [_uses_sp_el1(m) for m in (0b0101, 0b0100, 0b0000, 0b1001, 0b1000, 0x3C5, 0x3C4)] == \
        [True, False, False, True, False, True, False]
    assert _uses_sp_el1(0b0001) is False      # EL0 with SP select set: still SP_EL0


def test_sea_and_serror_syndromes_as_kvm_and_qemu_build_them() -> None:
    # QEMU kvm_inject_arm_sea / Linux KVM: data abort, IL, FnV, DFSC 0x10 (SEA).
    from armras.arch.cpu import sea_syndrome, serror_syndrome

    assert sea_syndrome(1) == 0x9600_0410 and sea_syndrome(0) == 0x9200_0410
    assert sea_syndrome(1, instruction=True) == 0x8600_0410
    assert sea_syndrome(1, fnv=False) == 0x9600_0010
    assert serror_syndrome(0b000) == 0xBE00_0011 and serror_syndrome(0b110) == 0xBE00_1811
    with pytest.raises(ValueError, match="0x4 is not an AET encoding of the RAS extension"):
        serror_syndrome(0b100)


def test_crash_report_registers_are_the_cpus(board) -> None:
    from test_machine import POWER_OFF

    b = board("""
 ldr x0, =0x40300000
 mov sp, x0
 ldr x1, =0x40001000
 msr vbar_el1, x1
 ldr x2, =0x12345678
 msr far_el1, x2
 ldr x3, =0x96000410
 msr esr_el1, x3
 ldr x4, =0x40002004
 msr elr_el1, x4
 isb
""" + POWER_OFF)
    assert b.run().status == 0
    regs = b.machine.cpu.snapshot()
    assert {k: regs[k] for k in ("sp", "vbar_el1", "far_el1", "esr_el1", "elr_el1")} == {
        "sp": 0x40300000, "vbar_el1": 0x40001000, "far_el1": 0x12345678, "esr_el1": 0x96000410,
        "elr_el1": 0x40002004}
    assert set(regs) == {"pc", "sp", "pstate", "elr_el1", "esr_el1", "far_el1", "vbar_el1"}
