"""SDEI: the dispatcher against Arm DEN 0054 and TF-A, and a bare-metal guest taking events.

The first half drives armras.firmware.sdei.SdeiDispatcher directly, with a real Cpu and a
small fake board. Expected values are written out from the specification and from TF-A's
services/std_svc/sdei (sdei_main.c, sdei_state.c, sdei_intr_mgmt.c), never taken from
armras's own constants: function ids 0xC400_0020 + n, SUCCESS 0, NOT_SUPPORTED -1,
INVALID_PARAMETERS -2, DENIED -3, PENDING -5, OUT_OF_RESOURCE -10, EVENT_STATUS bits
registered 1 / enabled 2 / running 4, handler entry at EL1h with DAIF masked (0x3c5).

The second half boots guest_images/sdei_ref.elf, which registers every SDEI-notified GHES
source's event, takes injected events in a wait loop (plain COMPLETE, and
COMPLETE_AND_RESUME into its IRQ vector), polls the polled source, and, when the HEST
lists a normal and a critical SDEI source, takes the critical event inside the normal
event's handler; it prints what it saw and the tests check those lines.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from conftest import in_order
from unicorn.arm64_const import UC_ARM64_REG_ELR_EL1, UC_ARM64_REG_PSTATE, UC_ARM64_REG_SP

from armras.arch.cpu import SPSR_EL1, Cpu
from armras.board.machine import Machine, MachineConfig
from armras.drive.inject import parse_inject_spec, schedule
from armras.errors import ArmrasError
from armras.firmware.sdei import EventDef, SdeiDispatcher
from armras.ras.sources import Notify, SdeiPriority, SourceSpec

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


# --- the guest -----------------------------------------------------------------------------------
def pattern(n: int) -> int:
    """What sdei_ref's wait loop keeps in xN (guest_images/sdei_ref.c SDEI_PATTERN)."""
    return 0x5DE1_0000_0000_0000 | n << 32 | 0xC0DE_0000 | n


def boot(image: Path, *injections: str, hest: tuple[SourceSpec, ...] | None = None,
         deterministic: bool = False) -> tuple[Machine, int, str]:
    console = io.BytesIO()
    config = MachineConfig(console=console, timeout=60, deterministic=deterministic)
    if hest is not None:
        config.hest = hest
    m = Machine(config)
    try:
        m.load_elf(image)
        for spec in injections:
            schedule(m, parse_inject_spec(spec))
        status = m.run().status
    finally:
        m.close()
    return m, status, console.getvalue().decode()


HANDLER = re.compile(r"^SDEI event (\d+) on CPU (\d+): x0=0x(\w+) x1=0x(\w+) x2=0x(\w+) x3=0x(\w+) depth=(\d)$", re.M)
BASIC = ("sdei:pa=0x40fa6000,on=^SDEI WAIT basic", "sdei:pa=0x40fb7000,on=^SDEI WAIT resume",
         "polled:pa=0x41234000,on=^POLL source=3 every")


def handler_entries(out: str) -> list[tuple[int, ...]]:
    return [(int(m[1]), int(m[2]), *(int(x, 16) for x in m.groups()[2:6]), int(m[7])) for m in HANDLER.finditer(out)]


def registered_arg(out: str, event: int) -> int:
    return int(re.search(rf"^SDEI register event={event} source=\d+ entry=0x\w+ arg=0x(\w+) ", out, re.M)[1], 16)


def test_guest_takes_sdei_events_and_polls(guest_images: Path) -> None:
    m, status, out = boot(guest_images / "sdei_ref.elf", *BASIC)
    assert status == 0, out
    loop = (m.symbols.address_of("sdei_wait_loop"), m.symbols.address_of("sdei_wait_end"))
    # It found the HEST's sources (as the firmware describes them) and the SDEI table.
    assert "SOURCE id=2 notify=11(SDEI) vector=804 poll_interval=0 block_len=1024" in out
    assert "SOURCE id=3 notify=0(polled) vector=0 poll_interval=1000 block_len=1024" in out
    assert re.search(r"^ACPI SDEI table at 0x\w+ length=36 revision=1$", out, re.M)
    assert "SDEI version=0x1000100000000 (1.1 vendor 0)" in out
    # Error returns before anything is registered.
    for line in ("register unknown event=262144 -> -2", "context outside a handler -> -3",
                 "complete outside a handler -> -3", "complete_and_resume outside a handler -> -3",
                 "enable unregistered event=804 -> -3", "status unregistered event=804 -> 0",
                 "register again event=804 -> -3", "pe_unmask -> 0",
                 "unregister event=804 -> 0", "pe_mask (unmasked) -> 1", "pe_mask (masked) -> 0"):
        assert f"SDEI check {line} " in out, line
    # (signaled= is not pinned: TF-A answers EV_SIGNALED with "not signalable", armras with
    # "signalable", and DEN 0054's own wording of that query is disputed in TF-A's sdei.h.)
    assert re.search(r"^SDEI info event=804 source=2 type=0\(private\) signaled=\d priority=1\(critical\)$", out, re.M)
    assert re.search(r"^SDEI register event=804 source=2 .* -> 0 status=0x1; enable -> 0 status=0x3$", out, re.M)
    arg = registered_arg(out, 804)

    # Two events, each taken in the wait loop: x0 = event, x1 = registered arg, x2 = the
    # loop, x3 = EL1h with DAIF masked (basic) / IRQs unmasked (resume).
    (basic, resume) = handler_entries(out)
    for entry, daif in ((basic, 0x3C0), (resume, 0x340)):
        event, cpu, x0, x1, x2, x3, depth = entry
        assert (event, cpu, x0, x1, depth) == (804, 0, 804, arg, 1)
        assert loop[0] <= x2 < loop[1], f"{x2:#x} outside the wait loop {loop[0]:#x}-{loop[1]:#x}"
        assert x3 & 0x3CF == 0x5 | daif
    contexts = re.findall(r"^SDEI context x0=0x(\w+) x1=0x(\w+) x2=0x(\w+) x3=0x(\w+) status=0x7 context\(18\)=-2$",
                          out, re.M)
    assert [[int(x, 16) for x in c] for c in contexts] == [[pattern(n) for n in range(4)]] * 2
    assert "SDEI event 804 on CPU 0: source=2 physical_address 0x40fa6000" in out
    assert "SDEI event 804 on CPU 0: source=2 physical_address 0x40fb7000" in out
    assert out.count("ACK source=2 read_ack=0x1 block_status=0x0") == 2
    assert "SDEI regs intact after basic: x0-x17 x19-x28" in out
    assert "SDEI status after complete event=804: 0x3" in out
    # COMPLETE_AND_RESUME into the IRQ vector: ELR_EL1/SPSR_EL1 are the interrupted PC/PSTATE.
    assert f"COMPLETE_AND_RESUME at {m.symbols.address_of('vectors') + 0x280:#x} (IRQ vector)" in out
    assert f"SDEI resumed at IRQ vector: ELR_EL1={resume[4]:#x} SPSR_EL1={resume[5]:#x} IAR=1023 " in out
    assert "SDEI regs intact after resume: x0-x17 x19-x28" in out
    assert "SDEI status after complete_and_resume event=804: 0x3" in out
    # The guest acknowledged each record: the second could only be written after the first ack.
    sdei = m.sources.by_id(2)
    assert sdei.records_written == 2 and sdei.read_ack() == 1 and sdei.block_status() == 0
    assert sum(pe.taken for pe in m.sdei.pes) == 2
    # The polled source: found at the first poll after the record was written.
    assert "POLL source=3 every 1000 ms: waiting for a record" in out
    assert "CPER section=memory pa=0x0000000041234000" in out
    assert re.search(r"^POLL source=3 record at poll 1 \(\d+ ms\): physical_address 0x41234000$", out, re.M)
    polled = m.sources.by_id(3)
    assert polled.records_written == 1 and polled.read_ack() == 1 and polled.block_status() == 0
    assert "SDEI NEST skipped: the HEST lists no normal-priority SDEI source" in out
    assert "SDEI status after unregister event=804: 0x0" in out
    assert "DONE sdei_taken=2 failures=0" in out and "FAIL" not in out


def test_guest_takes_an_event_while_idle_in_wfi(guest_images: Path) -> None:
    """An event raised while the CPU sleeps in WFI interrupts it there: the interrupted PC is
    the instruction after the WFI, as for any interrupt that ends a WFI."""
    m, status, out = boot(guest_images / "sdei_ref.elf", "sdei:pa=0x40fa6000,at=1.0", *BASIC[1:],
                          deterministic=True)
    assert status == 0, out
    start, end = m.symbols.address_of("sdei_wait_loop"), m.symbols.address_of("sdei_wait_end")
    code = m.mem.read(start, end - start)
    wfi = [start + i for i in range(0, len(code), 4) if int.from_bytes(code[i:i + 4], "little") == 0xD503207F]
    assert len(wfi) == 1
    event, _, _, _, x2, x3, _ = handler_entries(out)[0]
    assert event == 804 and x2 == wfi[0] + 4 and x3 & 0x3CF == 0x3C5
    assert "SDEI regs intact after basic: x0-x17 x19-x28" in out


NEST_HEST = (
    SourceSpec(0, Notify.SEA),
    SourceSpec(1, Notify.GPIO),
    SourceSpec(2, Notify.SDEI, event=804, priority=SdeiPriority.CRITICAL),
    SourceSpec(3, Notify.POLLED, poll_interval_ms=250),
    SourceSpec(4, Notify.SDEI, event=0x1234, priority=SdeiPriority.NORMAL),
)


def test_guest_takes_a_critical_event_inside_a_normal_handler(guest_images: Path) -> None:
    m, status, out = boot(guest_images / "sdei_ref.elf", *BASIC[:2], "polled:pa=0x41234000,on=^POLL source=3",
                          "sdei:source=4,pa=0x42000000,on=^SDEI WAIT nest",
                          "sdei:source=2,pa=0x43000000,on=^SDEI in normal handler", hest=NEST_HEST)
    assert status == 0, out
    loop = (m.symbols.address_of("sdei_wait_loop"), m.symbols.address_of("sdei_wait_end"))
    assert "SOURCE id=4 notify=11(SDEI) vector=4660 poll_interval=0 block_len=1024" in out
    assert re.search(r"^SDEI info event=4660 source=4 type=0\(private\) signaled=\d priority=0\(normal\)$", out, re.M)
    assert re.search(r"^POLL source=3 record at poll 1 \(\d+ ms\): physical_address 0x41234000$", out, re.M)
    in_order(out, [
        r"^SDEI WAIT nest event=4660$",
        r"^SDEI event 4660 on CPU 0: .* depth=1$",
        r"^SDEI event 4660 on CPU 0: source=4 physical_address 0x42000000$",
        r"^SDEI in normal handler event=4660, waiting for critical event 804$",
        r"^SDEI event 804 on CPU 0: .* depth=2$",
        r"^SDEI event 804 on CPU 0: source=2 physical_address 0x43000000$",
        r"^SDEI nested: critical event 804 interrupted normal event 4660 at PC 0x\w+ \(its wait loop\) "
        r"depth=2 status\(4660\)=0x7 frame 0x\w+ below the normal handler's 0x\w+$",
        r"^SDEI regs intact after critical event in normal handler: x0-x17 x19-x28$",
        r"^SDEI NEST order: enter 4660, enter 804, complete 804, complete 4660$",
        r"^SDEI regs intact after nest: x0-x17 x19-x28$",
        r"^SDEI status after nest event=4660: 0x3$",
        r"^SDEI status after nest event=804: 0x3$",
    ])
    entries = handler_entries(out)
    normal, critical = entries[2], entries[3]
    assert normal[0] == 4660 and normal[3] == registered_arg(out, 4660) and normal[5] & 0x3CF == 0x3C5
    assert critical[0] == 804 and critical[3] == registered_arg(out, 804) and critical[6] == 2
    # The critical event interrupted the normal handler's wait loop, with DAIF masked.
    assert loop[0] <= critical[4] < loop[1] and critical[5] & 0x3CF == 0x3C5
    assert m.sources.by_id(4).records_written == 1 and m.sources.by_id(4).acknowledged()
    assert m.sources.by_id(2).records_written == 3 and m.sources.by_id(2).acknowledged()
    assert sum(pe.taken for pe in m.sdei.pes) == 4
    assert "DONE sdei_taken=4 failures=0" in out and "FAIL" not in out


def test_guest_reports_an_event_that_never_came(guest_images: Path) -> None:
    """No injection: the first wait times out and the guest says so and exits non-zero."""
    _, status, out = boot(guest_images / "sdei_ref.elf")
    assert status == 2, out
    assert "FAIL: SDEI basic: event 804 was not taken within 2000 ms" in out
    assert "FAIL: POLL source=3: no record within 10 polls" in out


def test_an_event_the_guest_has_not_registered_yet_is_refused_without_a_record(guest_images: Path) -> None:
    """Firmware would drop the notification, so armras refuses the injection, and refuses it
    before writing the record: a record no one will read would block the source."""
    m = Machine(MachineConfig(console=io.BytesIO(), timeout=60))
    try:
        m.load_elf(guest_images / "sdei_ref.elf")
        schedule(m, parse_inject_spec("sdei:pa=0x40fa6000,on=^SDEI version"))
        with pytest.raises(ArmrasError, match="SDEI event 804 is not registered by the guest on CPU 0"):
            m.run()
    finally:
        m.close()
    source = m.sources.by_id(2)
    assert source.records_written == 0 and source.block_status() == 0 and source.acknowledged()
