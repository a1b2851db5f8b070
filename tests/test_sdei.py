"""SDEI: the dispatcher against Arm DEN 0054 and TF-A.

These tests drive armras.firmware.sdei.SdeiDispatcher directly, with a real Cpu and a
small fake board. Expected values are written out from the specification and from TF-A's
services/std_svc/sdei (sdei_main.c, sdei_state.c, sdei_intr_mgmt.c), never taken from
armras's own constants: function ids 0xC400_0020 + n, SUCCESS 0, NOT_SUPPORTED -1,
INVALID_PARAMETERS -2, DENIED -3, PENDING -5, OUT_OF_RESOURCE -10, EVENT_STATUS bits
registered 1 / enabled 2 / running 4, handler entry at EL1h with DAIF masked (0x3c5).
"""
from __future__ import annotations

import pytest
from unicorn.arm64_const import UC_ARM64_REG_ELR_EL1, UC_ARM64_REG_PSTATE, UC_ARM64_REG_SP

from armras.arch.cpu import SPSR_EL1, Cpu
from armras.errors import ArmrasError
from armras.firmware.sdei import EventDef, SdeiDispatcher
from armras.ras.sources import SdeiPriority

# --- DEN 0054 function ids and return codes, written out -------------------------------
VERSION, REGISTER, ENABLE, DISABLE, CONTEXT, COMPLETE, COMPLETE_AND_RESUME, UNREGISTER = (
    0xC400_0020, 0xC400_0021, 0xC400_0022, 0xC400_0023, 0xC400_0024, 0xC400_0025, 0xC400_0026, 0xC400_0027)
STATUS, GET_INFO, ROUTING_SET, PE_MASK, PE_UNMASK = 0xC400_0028, 0xC400_0029, 0xC400_002A, 0xC400_002B, 0xC400_002C
INTERRUPT_BIND, INTERRUPT_RELEASE, PRIVATE_RESET, SHARED_RESET = 0xC400_002D, 0xC400_002E, 0xC400_0031, 0xC400_0032
FEATURES = 0xC400_0050
NOT_SUPPORTED, INVALID, DENIED, PENDING, OUT_OF_RESOURCE = -1, -2, -3, -5, -10
REGISTERED, ENABLED, RUNNING = 1, 2, 4
RM_ANY, RM_PE = 0, 1
INFO_TYPE, INFO_SIGNALED, INFO_PRIORITY, INFO_ROUTING_MODE, INFO_ROUTING_AFF = 0, 1, 2, 3, 4
EL1H_DAIF_MASKED = 0x3C5          # SPSR M = EL1h (0b0101), D A I F set

RAM = 0x4000_0000
ENTRY = 0x4008_1000               # a handler address in RAM
CRITICAL, NORMAL, SHARED = 804, 805, 900
MPIDRS = (0x0, 0x1)


class FakeBoard:
    """What SdeiDispatcher asks of the board: two PEs, 256 MiB of RAM at 1 GiB (MMU off)."""

    def __init__(self) -> None:
        self.current = 0
        self.kicked: list[int] = []

    def current_cpu(self) -> int:
        return self.current

    def cpu_index_of(self, mpidr: int) -> int | None:
        return MPIDRS.index(mpidr) if mpidr in MPIDRS else None

    def valid_entry(self, cpu: Cpu, va: int) -> bool:
        return RAM <= va < RAM + 0x1000_0000

    def kick(self, index: int) -> None:
        self.kicked.append(index)


@pytest.fixture
def fw() -> tuple[SdeiDispatcher, Cpu]:
    board = FakeBoard()
    d = SdeiDispatcher(board, len(MPIDRS), [EventDef(CRITICAL, SdeiPriority.CRITICAL),
                                            EventDef(NORMAL, SdeiPriority.NORMAL),
                                            EventDef(SHARED, SdeiPriority.NORMAL, shared=True)])
    cpu = Cpu()
    cpu.uc.reg_write(UC_ARM64_REG_PSTATE, 0x6000_0345)     # EL1h, IRQs unmasked, Z and C set
    cpu.pc = 0x4009_0000
    return d, cpu


def call(fw: tuple[SdeiDispatcher, Cpu], fid: int, *args: int) -> int | None:
    """One SDEI call as the guest makes it (hvc #0, x0 = fid, x1.. = args)."""
    d, cpu = fw
    regs = [fid, *args, *([0] * (5 - len(args)))]
    for n, value in enumerate(regs):
        cpu.set_x(n, value)
    return d.call(cpu, fid, regs)


def register(fw, event: int, arg: int = 0xA5, flags: int = RM_ANY, affinity: int = 0) -> None:
    assert call(fw, REGISTER, event, ENTRY, arg, flags, affinity) == 0
    assert call(fw, ENABLE, event) == 0


def take(fw, event: int, pe: int = 0) -> None:
    """Trigger `event` on `pe` and let the dispatcher enter its handler there."""
    d, cpu = fw
    d.trigger(event, pe)
    assert d.dispatch_pending(cpu, pe)


def fill(cpu: Cpu, base: int) -> None:
    for n in range(31):
        cpu.set_x(n, base + n)


# --- calls that need no event --------------------------------------------------------------
def test_version_and_features(fw) -> None:
    assert call(fw, VERSION) == 1 << 48 | 1 << 32          # SDEI 1.1, vendor 0
    assert call(fw, FEATURES, 0) == 0                        # BIND_SLOTS: no private, no shared slots
    assert call(fw, FEATURES, 7) == INVALID                  # TF-A sdei_features: any other feature


@pytest.mark.parametrize("fid", [0xC400_0030, 0xC400_0033, 0xC400_004F])
@pytest.mark.parametrize("x1", [0, CRITICAL, 0xDEAD_BEEF])
def test_unknown_function_ids_are_not_supported(fw, fid: int, x1: int) -> None:
    """Ids inside the SDEI range that name no call (0x10, 0x13-0x2F): SMC_UNK (-1), whatever
    x1 holds; an unknown call must not be judged by its would-be event number."""
    assert call(fw, fid, x1) == NOT_SUPPORTED


def test_pe_mask_reports_whether_it_changed_anything(fw) -> None:
    assert call(fw, PE_MASK) == 0            # every PE starts masked (TF-A sdei_cpu_on_init)
    assert call(fw, PE_UNMASK) == 0
    assert call(fw, PE_MASK) == 1            # this call masked it
    assert call(fw, PE_MASK) == 0            # already masked: no effect


def test_interrupt_bind_and_release_without_dynamic_slots(fw) -> None:
    assert call(fw, INTERRUPT_BIND, 40) == OUT_OF_RESOURCE   # TF-A: no free dynamic slot -> ENOMEM
    assert call(fw, INTERRUPT_RELEASE, CRITICAL) == INVALID  # TF-A: not a dynamic event -> EINVAL


# --- parameters ----------------------------------------------------------------------------------
@pytest.mark.parametrize("event", [0x8000_0000, 0x8000_0000 + CRITICAL, 0xFFFF_FFFF, 12345])
@pytest.mark.parametrize("fid", [REGISTER, ENABLE, DISABLE, UNREGISTER, STATUS, GET_INFO])
def test_event_numbers_that_do_not_exist(fw, event: int, fid: int) -> None:
    """Event numbers are signed 32-bit (DEN 0054): >= 2^31 is negative, no such event."""
    assert call(fw, fid, event, ENTRY, 0, RM_ANY, 0) == INVALID


@pytest.mark.parametrize("entry", [0, 0x1000, 0x0900_0000, RAM + 0x1000_0000, 0xFFFF_0000_4008_1000])
def test_register_refuses_an_entry_point_outside_ram(fw, entry: int) -> None:
    assert call(fw, REGISTER, CRITICAL, entry, 0, RM_ANY, 0) == INVALID
    assert call(fw, STATUS, CRITICAL) == 0


def test_register_checks_flags_and_affinity(fw) -> None:
    assert call(fw, REGISTER, SHARED, ENTRY, 0, 2, 0) == INVALID          # unknown routing mode
    assert call(fw, REGISTER, SHARED, ENTRY, 0, RM_PE, 0x100) == INVALID  # no PE with that MPIDR
    assert call(fw, REGISTER, SHARED, ENTRY, 0, RM_PE, 0x1) == 0
    assert call(fw, GET_INFO, SHARED, INFO_ROUTING_MODE) == RM_PE
    assert call(fw, GET_INFO, SHARED, INFO_ROUTING_AFF) == 0x1


def test_get_info(fw) -> None:
    assert [call(fw, GET_INFO, CRITICAL, q) for q in (INFO_TYPE, INFO_PRIORITY)] == [0, 1]   # private, critical
    assert [call(fw, GET_INFO, NORMAL, q) for q in (INFO_TYPE, INFO_PRIORITY)] == [0, 0]
    assert [call(fw, GET_INFO, SHARED, q) for q in (INFO_TYPE, INFO_PRIORITY)] == [1, 0]
    assert call(fw, GET_INFO, CRITICAL, INFO_ROUTING_MODE) == INVALID     # private: no routing
    assert call(fw, GET_INFO, SHARED, INFO_ROUTING_MODE) == DENIED        # shared, not registered
    assert call(fw, GET_INFO, CRITICAL, 5) == INVALID


# --- the TF-A state table (sdei_state.c) --------------------------------------------------------
def test_state_table_outside_a_handler(fw) -> None:
    assert call(fw, STATUS, CRITICAL) == 0
    assert call(fw, ENABLE, CRITICAL) == DENIED          # reg_: ENA X
    assert call(fw, DISABLE, CRITICAL) == DENIED         # reg_: DISA X
    assert call(fw, UNREGISTER, CRITICAL) == DENIED      # reg_: UREG X, not running
    assert call(fw, REGISTER, CRITICAL, ENTRY, 1, RM_ANY, 0) == 0
    assert call(fw, STATUS, CRITICAL) == REGISTERED
    assert call(fw, REGISTER, CRITICAL, ENTRY, 1, RM_ANY, 0) == DENIED   # reG_: REG X
    assert call(fw, DISABLE, CRITICAL) == 0              # reG_: DISA NOP
    assert call(fw, STATUS, CRITICAL) == REGISTERED
    assert call(fw, ENABLE, CRITICAL) == 0
    assert call(fw, ENABLE, CRITICAL) == 0               # rEG_: ENA NOP
    assert call(fw, STATUS, CRITICAL) == REGISTERED | ENABLED
    assert call(fw, DISABLE, CRITICAL) == 0
    assert call(fw, STATUS, CRITICAL) == REGISTERED
    assert call(fw, UNREGISTER, CRITICAL) == 0
    assert call(fw, STATUS, CRITICAL) == 0


def test_state_table_while_running(fw) -> None:
    d, cpu = fw
    register(fw, CRITICAL)
    call(fw, PE_UNMASK)
    fill(cpu, 0x900)
    take(fw, CRITICAL)
    assert call(fw, STATUS, CRITICAL) == RUNNING | ENABLED | REGISTERED
    assert call(fw, REGISTER, CRITICAL, ENTRY, 1, RM_ANY, 0) == DENIED   # REG_: REG X
    assert call(fw, ENABLE, CRITICAL) == 0                               # REG_: ENA NOP
    assert call(fw, DISABLE, CRITICAL) == 0                              # REG_ -> ReG_
    assert call(fw, STATUS, CRITICAL) == RUNNING | REGISTERED
    assert call(fw, ENABLE, CRITICAL) == 0                               # ReG_ -> REG_
    assert call(fw, UNREGISTER, CRITICAL) == PENDING                     # REG_ -> Reg_, handler still runs
    assert call(fw, STATUS, CRITICAL) == RUNNING
    assert call(fw, UNREGISTER, CRITICAL) == PENDING                     # Reg_: UREG X, but running
    assert call(fw, ENABLE, CRITICAL) == DENIED                          # Reg_: ENA X
    assert call(fw, DISABLE, CRITICAL) == DENIED                         # Reg_: DISA X
    assert call(fw, REGISTER, CRITICAL, ENTRY, 1, RM_ANY, 0) == DENIED   # Reg_: REG X
    assert call(fw, CONTEXT, 0) == 0x900                                 # Reg_: CTX NOP
    assert call(fw, COMPLETE) is None                                    # Reg_ -> reg_
    assert call(fw, STATUS, CRITICAL) == 0
    assert call(fw, REGISTER, CRITICAL, ENTRY, 1, RM_ANY, 0) == 0        # free again


def test_disable_in_the_handler_leaves_it_registered(fw) -> None:
    register(fw, NORMAL)
    call(fw, PE_UNMASK)
    take(fw, NORMAL)
    assert call(fw, DISABLE, NORMAL) == 0
    assert call(fw, COMPLETE) is None                    # ReG_ -> reG_
    assert call(fw, STATUS, NORMAL) == REGISTERED


def test_routing_set(fw) -> None:
    assert call(fw, ROUTING_SET, CRITICAL, RM_ANY, 0) == INVALID     # a private event has no routing
    register(fw, CRITICAL)
    assert call(fw, ROUTING_SET, CRITICAL, RM_PE, 0x1) == INVALID
    assert call(fw, ROUTING_SET, SHARED, RM_PE, 0x1) == DENIED       # reg_: ROUT X
    assert call(fw, REGISTER, SHARED, ENTRY, 0, RM_ANY, 0) == 0
    assert call(fw, ROUTING_SET, SHARED, 2, 0) == INVALID            # unknown mode
    assert call(fw, ROUTING_SET, SHARED, RM_PE, 0x7) == INVALID      # no such PE
    assert call(fw, ROUTING_SET, SHARED, RM_PE, 0x1) == 0            # reG_: ROUT NOP
    assert call(fw, GET_INFO, SHARED, INFO_ROUTING_MODE) == RM_PE
    assert call(fw, GET_INFO, SHARED, INFO_ROUTING_AFF) == 0x1
    assert call(fw, ENABLE, SHARED) == 0
    assert call(fw, ROUTING_SET, SHARED, RM_ANY, 0) == DENIED        # rEG_: ROUT X


# --- dispatch, context, completion ---------------------------------------------------------------
def test_event_context_outside_and_inside_a_handler(fw) -> None:
    d, cpu = fw
    assert call(fw, CONTEXT, 0) == DENIED                # no event running
    assert call(fw, CONTEXT, 18) == INVALID              # TF-A checks the parameter first
    register(fw, CRITICAL)
    call(fw, PE_UNMASK)
    fill(cpu, 0x1000)
    take(fw, CRITICAL)
    assert [call(fw, CONTEXT, n) for n in (0, 1, 17)] == [0x1000, 0x1001, 0x1011]
    assert call(fw, CONTEXT, 18) == INVALID              # only x0-x17 are kept
    assert call(fw, CONTEXT, 1 << 40) == INVALID


def test_handler_entry_and_complete_restore_the_interrupted_context(fw) -> None:
    d, cpu = fw
    register(fw, CRITICAL, arg=0xFEED)
    call(fw, PE_UNMASK)
    fill(cpu, 0x7000)
    pc, pstate, sp = cpu.pc, cpu.pstate, cpu.uc.reg_read(UC_ARM64_REG_SP)
    take(fw, CRITICAL)
    assert [cpu.x(n) for n in range(4)] == [CRITICAL, 0xFEED, pc, pstate]
    assert cpu.pc == ENTRY and cpu.pstate & 0xFFFF_FFFF == EL1H_DAIF_MASKED
    for n in range(31):                  # the handler clobbers everything
        cpu.set_x(n, 0xBAD0 + n)
    assert call(fw, COMPLETE) is None
    assert [cpu.x(n) for n in range(18)] == [0x7000 + n for n in range(18)]     # x0-x17 given back
    assert cpu.x(18) == 0xBAD0 + 18                                             # the rest is the client's
    assert cpu.pc == pc and cpu.pstate == pstate
    assert cpu.uc.reg_read(UC_ARM64_REG_SP) == sp
    assert call(fw, STATUS, CRITICAL) == REGISTERED | ENABLED
    assert call(fw, COMPLETE) == DENIED                  # nothing left to complete


def test_complete_and_resume_looks_like_an_exception_taken_at_the_address(fw) -> None:
    d, cpu = fw
    register(fw, CRITICAL)
    call(fw, PE_UNMASK)
    fill(cpu, 0x300)
    pc, pstate = cpu.pc, cpu.pstate
    take(fw, CRITICAL)
    assert call(fw, COMPLETE_AND_RESUME, 0x1000) == DENIED               # not in RAM: TF-A EDENY
    assert call(fw, STATUS, CRITICAL) == RUNNING | ENABLED | REGISTERED  # still running
    vector = 0x4008_0A80
    assert call(fw, COMPLETE_AND_RESUME, vector) is None
    assert cpu.pc == vector and cpu.pstate & 0xFFFF_FFFF == EL1H_DAIF_MASKED
    assert cpu.uc.reg_read(UC_ARM64_REG_ELR_EL1) == pc
    assert cpu.sysreg(SPSR_EL1) == pstate
    assert [cpu.x(n) for n in range(18)] == [0x300 + n for n in range(18)]
    assert call(fw, STATUS, CRITICAL) == REGISTERED | ENABLED


def test_a_critical_event_preempts_a_normal_one_and_both_complete_in_order(fw) -> None:
    d, cpu = fw
    register(fw, NORMAL)
    register(fw, CRITICAL)
    call(fw, PE_UNMASK)
    outer_pc = cpu.pc
    take(fw, NORMAL)
    assert cpu.x(0) == NORMAL
    cpu.pc = ENTRY + 0x40                        # somewhere in the normal handler
    d.trigger(NORMAL, 0)                         # a normal event cannot preempt a normal one
    assert d.deliverable(0) is None
    d.trigger(CRITICAL, 0)
    assert d.dispatch_pending(cpu, 0)
    assert [cpu.x(0), cpu.x(2)] == [CRITICAL, ENTRY + 0x40]     # interrupted PC: in the normal handler
    assert call(fw, STATUS, NORMAL) == RUNNING | ENABLED | REGISTERED
    assert d.deliverable(0) is None              # nothing preempts a critical event
    assert call(fw, COMPLETE) is None            # the critical one completes first ...
    assert cpu.pc == ENTRY + 0x40
    assert call(fw, STATUS, CRITICAL) == REGISTERED | ENABLED
    assert call(fw, COMPLETE) is None            # ... then the normal one
    assert cpu.pc == outer_pc
    d.after_call(cpu)                            # the normal event triggered meanwhile runs now
    assert cpu.x(0) == NORMAL and cpu.x(2) == outer_pc and cpu.pc == ENTRY


def test_a_masked_pe_keeps_the_event_pending_until_unmask(fw) -> None:
    d, cpu = fw
    register(fw, CRITICAL)
    d.trigger(CRITICAL, 0)
    assert not d.dispatch_pending(cpu, 0)
    assert call(fw, STATUS, CRITICAL) == REGISTERED | ENABLED
    assert call(fw, PE_UNMASK) == 0
    d.after_call(cpu)                            # the PE_UNMASK's hvc returns into the handler
    assert cpu.pc == ENTRY and call(fw, STATUS, CRITICAL) == RUNNING | ENABLED | REGISTERED


def test_a_disabled_event_stays_pending_until_enabled(fw) -> None:
    d, cpu = fw
    register(fw, CRITICAL)
    call(fw, PE_UNMASK)
    assert call(fw, DISABLE, CRITICAL) == 0
    d.trigger(CRITICAL, 0)
    assert not d.dispatch_pending(cpu, 0)
    assert call(fw, ENABLE, CRITICAL) == 0
    assert d.dispatch_pending(cpu, 0)


def test_unregister_drops_a_pending_trigger(fw) -> None:
    d, cpu = fw
    register(fw, CRITICAL)
    d.trigger(CRITICAL, 0)                       # pending: the PE is masked
    assert call(fw, UNREGISTER, CRITICAL) == 0
    register(fw, CRITICAL)
    call(fw, PE_UNMASK)
    assert not d.dispatch_pending(cpu, 0)


def test_private_events_are_per_pe(fw) -> None:
    d, cpu = fw
    register(fw, CRITICAL)
    assert d.registration(CRITICAL, 1).state == 0
    with pytest.raises(ArmrasError, match="not registered"):
        d.trigger(CRITICAL, 1)
    d.reset_pe(0)                                # PSCI CPU_ON: private events cleared, PE masked
    assert call(fw, STATUS, CRITICAL) == 0 and call(fw, PE_MASK) == 0


def test_triggering_an_event_the_guest_never_registered_is_refused(fw) -> None:
    d, cpu = fw
    with pytest.raises(ArmrasError, match="not registered"):
        d.trigger(CRITICAL, 0)
    with pytest.raises(ArmrasError, match="does not exist"):
        d.trigger(4242, 0)
    assert not d.registration(CRITICAL, 0).pending


def test_private_reset_while_a_handler_runs(fw) -> None:
    register(fw, NORMAL)
    register(fw, CRITICAL)
    call(fw, PE_UNMASK)
    take(fw, CRITICAL)
    assert call(fw, PRIVATE_RESET) == DENIED         # TF-A: an unregister came back PENDING
    assert call(fw, STATUS, NORMAL) == 0
    assert call(fw, STATUS, CRITICAL) == RUNNING
    assert call(fw, COMPLETE) is None
    assert call(fw, PRIVATE_RESET) == 0
    assert call(fw, SHARED_RESET) == 0
