"""Cpu.take_exception and the exception-loop check, on a real Unicorn core.

Expected values are the Arm ARM's (DDI 0487, D1.10 "Exception entry"): the vector
offsets of Table D1-7 (Current EL with SP0 0x000, Current EL with SPx 0x200, Lower EL
using AArch64 0x400; +0x000 synchronous, +0x080 IRQ, +0x100 FIQ, +0x180 SError),
SPSR_EL1 = the PSTATE the exception interrupted, PSTATE after entry = EL1h with D, A, I
and F set (0x3C5), the live SP switched to SP_EL1 with SP_EL0 banked, and ERET undoing
all of it. Each check runs the entry, then the handler's ERET, as instructions.
"""
from __future__ import annotations

import struct

import pytest
from unicorn.arm64_const import (
    UC_ARM64_REG_ELR_EL1,
    UC_ARM64_REG_ESR_EL1,
    UC_ARM64_REG_FAR_EL1,
    UC_ARM64_REG_PC,
    UC_ARM64_REG_PSTATE,
    UC_ARM64_REG_SP,
    UC_ARM64_REG_SP_EL0,
    UC_ARM64_REG_SP_EL1,
    UC_ARM64_REG_VBAR_EL1,
)

from armras.arch.cpu import Cpu, GuestFault

VBAR = 0x10000
CODE = 0x20000
ERET = 0xD69F03E0
NOP = 0xD503201F
SCTLR_EL1 = (3, 0, 1, 0, 0)        # op0, op1, CRn, CRm, op2 (Arm ARM D17.2.118)
SPSR_EL1 = (3, 0, 4, 0, 0)         # (Arm ARM C5.2.18)
SCTLR_M = 1 << 0                   # stage 1 MMU enable
SCTLR_A = 1 << 1                   # alignment check enable
ESR_SEA_LOWER = 0x92000410         # EC 0x24 data abort from a lower EL, IL, FnV, DFSC 0x10
ESR_SEA_SAME = 0x96000410          # EC 0x25 data abort without a change of EL
ESR_UNKNOWN = 0x02000000           # EC 0x00 (undefined instruction), IL
EL1H_DAIF = 0x3C5                  # M[3:0] = 0b0101 (EL1h), D A I F = 1

# (PSTATE at the exception, its name, the vector table quarter the Arm ARM selects)
ORIGINS = [(0x6000_0000, "EL0t, Z and C set", 0x400),
           (0x0000_0004, "EL1t", 0x000),
           (0x8000_0005, "EL1h, N set", 0x200)]
KINDS = [(0x000, "synchronous"), (0x080, "IRQ"), (0x100, "FIQ"), (0x180, "SError")]


@pytest.fixture
def cpu() -> Cpu:
    c = Cpu()
    c.uc.mem_map(VBAR, 0x1000)
    c.uc.mem_write(VBAR, struct.pack("<I", ERET) * (0x800 // 4))     # every handler: eret
    c.uc.mem_map(CODE, 0x1000)
    c.uc.mem_write(CODE, struct.pack("<I", NOP) * (0x1000 // 4))
    c.uc.reg_write(UC_ARM64_REG_VBAR_EL1, VBAR)
    return c


def _at(cpu: Cpu, pstate: int, sp: int, sp_el0: int, sp_el1: int) -> None:
    """The CPU as an exception finds it: `pstate`, the live SP, and both SP banks."""
    uc = cpu.uc
    uc.reg_write(UC_ARM64_REG_PSTATE, pstate)
    uc.reg_write(UC_ARM64_REG_SP_EL0, sp_el0)
    uc.reg_write(UC_ARM64_REG_SP_EL1, sp_el1)
    uc.reg_write(UC_ARM64_REG_SP, sp)
    uc.reg_write(UC_ARM64_REG_ESR_EL1, 0x1111)
    uc.reg_write(UC_ARM64_REG_FAR_EL1, 0x2222)


def _eret(cpu: Cpu) -> None:
    """Run the handler: the single ERET at the vector."""
    pc = cpu.pc
    cpu.uc.emu_start(pc, pc + 4, count=1)


def test_sync_from_el0_writes_the_syndrome_banks_sp_el0_and_eret_returns(cpu: Cpu) -> None:
    uc = cpu.uc
    _at(cpu, 0x6000_0000, sp=0x3000, sp_el0=0xDEAD0, sp_el1=0x8000)
    target = cpu.take_exception(0x000, elr=CODE + 4, esr=ESR_SEA_LOWER, far=0x1234_5678)
    assert target == VBAR + 0x400 and uc.reg_read(UC_ARM64_REG_PC) == VBAR + 0x400
    assert uc.reg_read(UC_ARM64_REG_ELR_EL1) == CODE + 4
    assert uc.reg_read(UC_ARM64_REG_ESR_EL1) == ESR_SEA_LOWER
    assert uc.reg_read(UC_ARM64_REG_FAR_EL1) == 0x1234_5678
    assert uc.cpr_read(*SPSR_EL1) == 0x6000_0000
    assert uc.reg_read(UC_ARM64_REG_PSTATE) == EL1H_DAIF
    assert uc.reg_read(UC_ARM64_REG_SP) == 0x8000           # the handler runs on SP_EL1
    assert uc.reg_read(UC_ARM64_REG_SP_EL0) == 0x3000       # EL0's stack pointer, banked
    assert cpu.exceptions_taken == 1
    _eret(cpu)
    assert uc.reg_read(UC_ARM64_REG_PC) == CODE + 4
    assert uc.reg_read(UC_ARM64_REG_PSTATE) == 0x6000_0000
    assert uc.reg_read(UC_ARM64_REG_SP) == 0x3000


def test_irq_from_el1h_keeps_sp_and_leaves_esr_and_far_alone(cpu: Cpu) -> None:
    uc = cpu.uc
    _at(cpu, 0x0000_0005, sp=0x9000, sp_el0=0x4440, sp_el1=0x9000)
    assert cpu.take_exception(0x080, elr=CODE + 8) == VBAR + 0x280
    # An IRQ has no syndrome (Arm ARM D1.10.4): ESR_EL1 and FAR_EL1 keep their values.
    assert uc.reg_read(UC_ARM64_REG_ESR_EL1) == 0x1111 and uc.reg_read(UC_ARM64_REG_FAR_EL1) == 0x2222
    assert uc.reg_read(UC_ARM64_REG_ELR_EL1) == CODE + 8
    assert uc.cpr_read(*SPSR_EL1) == 0x5
    assert uc.reg_read(UC_ARM64_REG_PSTATE) == EL1H_DAIF
    assert uc.reg_read(UC_ARM64_REG_SP) == 0x9000           # already on SP_EL1
    assert uc.reg_read(UC_ARM64_REG_SP_EL0) == 0x4440       # SP_EL0 untouched
    _eret(cpu)
    assert uc.reg_read(UC_ARM64_REG_PC) == CODE + 8
    assert uc.reg_read(UC_ARM64_REG_PSTATE) == 0x5 and uc.reg_read(UC_ARM64_REG_SP) == 0x9000


def test_serror_from_el1t_switches_from_sp_el0_to_sp_el1(cpu: Cpu) -> None:
    uc = cpu.uc
    _at(cpu, 0x0000_0004, sp=0x7000, sp_el0=0xDEAD0, sp_el1=0x8800)
    assert cpu.take_exception(0x180, elr=CODE, esr=0xBE000011) == VBAR + 0x180
    assert uc.reg_read(UC_ARM64_REG_SP) == 0x8800
    assert uc.reg_read(UC_ARM64_REG_SP_EL0) == 0x7000
    assert uc.cpr_read(*SPSR_EL1) == 0x4
    assert uc.reg_read(UC_ARM64_REG_ESR_EL1) == 0xBE000011
    _eret(cpu)
    assert uc.reg_read(UC_ARM64_REG_PSTATE) == 0x4 and uc.reg_read(UC_ARM64_REG_SP) == 0x7000


@pytest.mark.parametrize("pstate,origin,quarter", ORIGINS, ids=[o[1] for o in ORIGINS])
@pytest.mark.parametrize("kind,what", KINDS, ids=[k[1] for k in KINDS])
def test_vector_offsets_of_table_d1_7(cpu: Cpu, pstate: int, origin: str, quarter: int, kind: int,
                                      what: str) -> None:
    _at(cpu, pstate, sp=0x3000, sp_el0=0x3000, sp_el1=0x8000)
    assert cpu.take_exception(kind, elr=CODE, esr=ESR_UNKNOWN) == VBAR + quarter + kind
    assert cpu.pc == VBAR + quarter + kind


def test_exceptions_are_counted_one_by_one(cpu: Cpu) -> None:
    _at(cpu, 0x0, sp=0x3000, sp_el0=0x3000, sp_el1=0x8000)
    assert cpu.exceptions_taken == 0
    cpu.take_exception(0x080, elr=CODE)
    cpu.take_exception(0x080, elr=CODE + 4)
    cpu.take_exception(0x000, elr=CODE + 8, esr=ESR_SEA_SAME)
    assert cpu.exceptions_taken == 3


@pytest.mark.parametrize("pstate,el", [(0x9, 2), (0x8, 2), (0xD, 3)])
def test_an_exception_at_el2_or_el3_is_a_guest_fault(cpu: Cpu, pstate: int, el: int) -> None:
    # armras is the EL2/EL3 firmware itself: a guest never runs there, so an exception
    # taken there has no guest vector table to go to.
    _at(cpu, pstate, sp=0x3000, sp_el0=0x3000, sp_el1=0x8000)
    with pytest.raises(GuestFault, match=f"while the CPU is at EL{el}; armras runs EL2/EL3 itself"):
        cpu.take_exception(0x000, elr=CODE, esr=ESR_UNKNOWN)
    assert cpu.exceptions_taken == 0


# --- the exception-loop check (docs/design.md, "Guest faults") -------------------------------
def _no_vectors(cpu: Cpu, sctlr_bits: int) -> None:
    cpu.uc.reg_write(UC_ARM64_REG_VBAR_EL1, 0)
    cpu.set_sysreg(SCTLR_EL1, (cpu.sysreg(SCTLR_EL1) & ~(SCTLR_M | SCTLR_A)) | sctlr_bits)
    _at(cpu, 0x5, sp=0x8000, sp_el0=0x3000, sp_el1=0x8000)


def test_sync_exception_with_vbar_0_and_the_mmu_off_is_reported(cpu: Cpu) -> None:
    _no_vectors(cpu, 0)
    with pytest.raises(GuestFault) as e:
        cpu.take_exception(0x000, elr=CODE + 4, esr=ESR_SEA_SAME)
    assert str(e.value) == ("guest took a synchronous exception (ESR 0x96000410 at 0x20004) before "
                            "installing a vector table (VBAR_EL1 is 0)")


def test_without_a_syndrome_the_report_says_esr_0(cpu: Cpu) -> None:
    _no_vectors(cpu, 0)
    with pytest.raises(GuestFault, match=r"\(ESR 0x00000000 at 0x20000\) before installing"):
        cpu.take_exception(0x000, elr=CODE)


def test_an_irq_with_vbar_0_is_taken_not_reported(cpu: Cpu) -> None:
    _no_vectors(cpu, 0)
    assert cpu.take_exception(0x080, elr=CODE) == 0x280


@pytest.mark.parametrize("sctlr_bits", [SCTLR_M, SCTLR_M | SCTLR_A])
def test_vbar_0_with_the_mmu_on_is_a_virtual_address_like_any_other(cpu: Cpu, sctlr_bits: int) -> None:
    # With stage 1 translation on, VA 0 may be mapped: the table may well be there.
    _no_vectors(cpu, sctlr_bits)
    assert cpu.take_exception(0x000, elr=CODE, esr=ESR_SEA_SAME) == 0x200


@pytest.mark.parametrize("sctlr_bits", [0, SCTLR_A])
def test_a_vector_table_with_the_mmu_off_is_not_reported(cpu: Cpu, sctlr_bits: int) -> None:
    cpu.set_sysreg(SCTLR_EL1, (cpu.sysreg(SCTLR_EL1) & ~(SCTLR_M | SCTLR_A)) | sctlr_bits)
    _at(cpu, 0x5, sp=0x8000, sp_el0=0x3000, sp_el1=0x8000)
    assert cpu.take_exception(0x000, elr=CODE, esr=ESR_SEA_SAME) == VBAR + 0x200


def _repeat(cpu: Cpu, elr: int, times: int, esr: int = ESR_UNKNOWN) -> None:
    for _ in range(times):
        cpu.take_exception(0x000, elr=elr, esr=esr)


def test_the_same_fault_65_times_in_a_row_inside_the_vector_table_is_a_loop(cpu: Cpu) -> None:
    # The handler at VBAR itself faults: 1 entry plus 63 repeats are let through, the 64th
    # repeat (the 65th entry) stops the guest.
    _at(cpu, 0x4, sp=0x7000, sp_el0=0x7000, sp_el1=0x8000)
    _repeat(cpu, VBAR, 64)
    with pytest.raises(GuestFault) as e:
        cpu.take_exception(0x000, elr=VBAR, esr=ESR_UNKNOWN)
    assert str(e.value) == ("guest is stuck in an exception loop: ESR 0x02000000 taken again and again "
                            "at 0x10000 inside its vector table (VBAR_EL1 0x10000)")


def test_the_last_instruction_of_the_table_counts_the_first_after_it_does_not(cpu: Cpu) -> None:
    _at(cpu, 0x5, sp=0x8000, sp_el0=0x3000, sp_el1=0x8000)
    _repeat(cpu, VBAR + 0x800, 200)                          # just past the 2 KB table
    _repeat(cpu, CODE, 200)                                  # ordinary code
    _repeat(cpu, VBAR + 0x7FC, 64)
    with pytest.raises(GuestFault, match="exception loop"):
        cpu.take_exception(0x000, elr=VBAR + 0x7FC, esr=ESR_UNKNOWN)


def test_progress_resets_the_count(cpu: Cpu) -> None:
    _at(cpu, 0x5, sp=0x8000, sp_el0=0x3000, sp_el1=0x8000)
    for _ in range(100):                                     # two handlers faulting in turn
        cpu.take_exception(0x000, elr=VBAR + 0x200, esr=ESR_UNKNOWN)
        cpu.take_exception(0x000, elr=VBAR + 0x280, esr=ESR_UNKNOWN)
    _repeat(cpu, VBAR + 0x200, 60)
    _repeat(cpu, VBAR + 0x200, 60, esr=ESR_SEA_SAME)         # another syndrome: another fault
    _repeat(cpu, VBAR + 0x200, 4, esr=ESR_SEA_SAME)          # 64 entries of it so far
    with pytest.raises(GuestFault, match="ESR 0x96000410 taken again and again at 0x10200"):
        cpu.take_exception(0x000, elr=VBAR + 0x200, esr=ESR_SEA_SAME)


# --- returns from EL3 (SDEI dispatch and completion) and the reset state ------------------------
def test_eret_to_el1h_from_el0_banks_the_el0_stack_pointer(cpu: Cpu) -> None:
    # SDEI dispatch to an interrupted EL0 context: EL0's SP goes to SP_EL0, the handler
    # runs on SP_EL1 (Arm ARM D1.6.2: at EL1h the stack pointer is SP_EL1).
    uc = cpu.uc
    _at(cpu, 0x0, sp=0x3000, sp_el0=0xDEAD0, sp_el1=0x8000)
    cpu.eret_to(CODE, EL1H_DAIF)
    assert uc.reg_read(UC_ARM64_REG_PC) == CODE and uc.reg_read(UC_ARM64_REG_PSTATE) == EL1H_DAIF
    assert uc.reg_read(UC_ARM64_REG_SP) == 0x8000
    assert uc.reg_read(UC_ARM64_REG_SP_EL0) == 0x3000


def test_eret_to_el0_from_el1h_banks_the_el1_stack_pointer(cpu: Cpu) -> None:
    # SDEI completion back to EL0: the live SP becomes SP_EL0, SP_EL1 keeps the handler's.
    uc = cpu.uc
    _at(cpu, 0x5, sp=0x8800, sp_el0=0x3000, sp_el1=0xDEAD0)
    cpu.eret_to(CODE + 4, 0x0)
    assert uc.reg_read(UC_ARM64_REG_PC) == CODE + 4 and uc.reg_read(UC_ARM64_REG_PSTATE) == 0
    assert uc.reg_read(UC_ARM64_REG_SP) == 0x3000
    assert uc.reg_read(UC_ARM64_REG_SP_EL1) == 0x8800


def test_the_reset_state_is_el1h_masked_with_spsr_0(cpu: Cpu) -> None:
    # PSCI CPU_ON: "the core is in EL1 (or EL2) with DAIF masked"; SPSR_EL1 is UNKNOWN in the
    # architecture, QEMU's CPU reset clears it (arm_cpu_reset_hold zeroes the banked SPSRs).
    _at(cpu, 0x6000_0000, sp=0x3000, sp_el0=0x3000, sp_el1=0x8000)
    cpu.uc.cpr_write(*SPSR_EL1, 0x3C5)
    cpu.enter_el1_reset_state()
    assert cpu.uc.reg_read(UC_ARM64_REG_PSTATE) == EL1H_DAIF
    assert cpu.uc.cpr_read(*SPSR_EL1) == 0
