"""SDEI 1.1 dispatcher: the Software Delegated Exception Interface of the platform firmware.

Arm DEN 0054 (SDEI), called over the SMCCC conduit the FADT names (HVC here). The model
is TF-A's services/std_svc/sdei: the event state machine (registered / enabled /
running, sdei_state.c), the per-PE mask and dispatch stack (sdei_intr_mgmt.c), and its
return codes. An event is dispatched to its client at EL1h with DAIF masked, x0 = the
event number, x1 = the registered argument, x2/x3 = the interrupted PC/PSTATE; x0-x17,
PC and PSTATE of the interrupted context are kept (TF-A's SDEI_SAVED_GPREGS) and put back
on EVENT_COMPLETE. EVENT_COMPLETE_AND_RESUME(addr) instead continues at `addr` as if an
exception had been taken there (ELR_EL1/SPSR_EL1 = the interrupted PC/PSTATE), which is
how Linux turns an event that interrupted unmasked code into an IRQ.

The board's events: event 0 (private, normal, signalable; raised by EVENT_SIGNAL) and one
event per SDEI-notified error source (armras.ras.sources, its priority and type). They
are raised by the board (`trigger`) after it has recorded the error. An event that
cannot run yet (disabled, PE masked, a handler running) stays pending, as an
interrupt-bound event does in TF-A; triggering an event the guest has not registered
is refused, since TF-A would drop that notification.

Everything the guest passes is untrusted: bad event numbers, flags, entry points that do
not translate to RAM, unbalanced COMPLETE calls get the spec's error codes.
"""
from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from armras.arch.cpu import PSTATE_DAIF, PSTATE_EL1H, Cpu
from armras.errors import ArmrasError
from armras.events import EventLog
from armras.ras.sources import SdeiPriority

log = logging.getLogger(__name__)

# Function ids (DEN 0054 5.1, SMC64 fast calls 0xC400_0020 + n).
SDEI_FN_BASE = 0xC400_0020
VERSION = SDEI_FN_BASE + 0x00
EVENT_REGISTER = SDEI_FN_BASE + 0x01
EVENT_ENABLE = SDEI_FN_BASE + 0x02
EVENT_DISABLE = SDEI_FN_BASE + 0x03
EVENT_CONTEXT = SDEI_FN_BASE + 0x04
EVENT_COMPLETE = SDEI_FN_BASE + 0x05
EVENT_COMPLETE_AND_RESUME = SDEI_FN_BASE + 0x06
EVENT_UNREGISTER = SDEI_FN_BASE + 0x07
EVENT_STATUS = SDEI_FN_BASE + 0x08
EVENT_GET_INFO = SDEI_FN_BASE + 0x09
EVENT_ROUTING_SET = SDEI_FN_BASE + 0x0A
PE_MASK = SDEI_FN_BASE + 0x0B
PE_UNMASK = SDEI_FN_BASE + 0x0C
INTERRUPT_BIND = SDEI_FN_BASE + 0x0D
INTERRUPT_RELEASE = SDEI_FN_BASE + 0x0E
EVENT_SIGNAL = SDEI_FN_BASE + 0x0F
PRIVATE_RESET = SDEI_FN_BASE + 0x11
SHARED_RESET = SDEI_FN_BASE + 0x12
FEATURES = SDEI_FN_BASE + 0x30
SDEI_FN_LAST = FEATURES
# Ids of the range that name a call (0x10 and 0x13-0x2F are unallocated).
KNOWN_FNS = frozenset(range(VERSION, EVENT_SIGNAL + 1)) | {PRIVATE_RESET, SHARED_RESET, FEATURES}

# Return codes (DEN 0054 5.2).
SUCCESS = 0
NOT_SUPPORTED = -1
INVALID_PARAMETERS = -2
DENIED = -3
PENDING = -5
OUT_OF_RESOURCE = -10

VERSION_MAJOR, VERSION_MINOR, VERSION_VENDOR = 1, 1, 0
SDEI_VERSION_VALUE = VERSION_MAJOR << 48 | VERSION_MINOR << 32 | VERSION_VENDOR

SAVED_GPREGS = 18                  # x0-x17: what the dispatcher keeps and EVENT_CONTEXT returns
EVENT_SIGNAL_NUMBER = 0            # event 0: the signal event
REGF_RM_ANY, REGF_RM_PE = 0, 1     # EVENT_REGISTER / ROUTING_SET flags: routing mode
INFO_EV_TYPE, INFO_EV_SIGNALED, INFO_EV_PRIORITY, INFO_EV_ROUTING_MODE, INFO_EV_ROUTING_AFF = range(5)
FEATURE_BIND_SLOTS = 0             # FEATURES(0): dynamic (bindable) event slots; this firmware has none
MPIDR_AFFINITY_MASK = 0xFF_00FF_FFFF


class State(enum.IntFlag):
    """EVENT_STATUS bits (DEN 0054 5.1.8), per event (per PE for private events)."""

    REGISTERED = 1
    ENABLED = 2
    RUNNING = 4


class Action(enum.Enum):
    REGISTER = "register"
    ENABLE = "enable"
    DISABLE = "disable"
    UNREGISTER = "unregister"
    ROUTING = "routing"
    CONTEXT = "context"
    COMPLETE = "complete"
    COMPLETE_RESUME = "complete_resume"
    DISPATCH = "dispatch"


_R, _E, _G = State.RUNNING, State.ENABLED, State.REGISTERED
_NOP = object()
# TF-A sdei_state.c sdei_state_table: state -> action -> next state (_NOP: allowed, no
# change); a missing action is not allowed (DENIED).
_TRANSITIONS: dict[State, dict[Action, object]] = {
    State(0): {Action.REGISTER: _G},
    _R: {Action.CONTEXT: _NOP, Action.COMPLETE: State(0), Action.COMPLETE_RESUME: State(0)},
    _G: {Action.ENABLE: _E | _G, Action.DISABLE: _NOP, Action.UNREGISTER: State(0), Action.ROUTING: _NOP},
    _R | _G: {Action.ENABLE: _R | _E | _G, Action.DISABLE: _NOP, Action.UNREGISTER: _R, Action.CONTEXT: _NOP,
              Action.COMPLETE: _G, Action.COMPLETE_RESUME: _G},
    _E | _G: {Action.ENABLE: _NOP, Action.DISABLE: _G, Action.UNREGISTER: State(0),
              Action.DISPATCH: _R | _E | _G},
    _R | _E | _G: {Action.ENABLE: _NOP, Action.DISABLE: _R | _G, Action.UNREGISTER: _R, Action.CONTEXT: _NOP,
                   Action.COMPLETE: _E | _G, Action.COMPLETE_RESUME: _E | _G},
}


@dataclass(frozen=True)
class EventDef:
    number: int
    priority: SdeiPriority = SdeiPriority.NORMAL
    shared: bool = False
    signalable: bool = False


@dataclass
class Registration:
    """One event's client state (for a private event: on one PE)."""

    state: State = State(0)
    entry: int = 0
    arg: int = 0
    flags: int = REGF_RM_ANY
    affinity: int = 0
    pending: bool = False           # triggered, waiting to be dispatched

    def transition(self, action: Action) -> bool:
        nxt = _TRANSITIONS.get(self.state, {}).get(action)
        if nxt is None:
            return False
        if nxt is not _NOP:
            self.state = nxt  # type: ignore[assignment]
        return True

    def clear_client(self) -> None:
        self.entry = self.arg = self.affinity = 0
        self.flags = REGF_RM_ANY


@dataclass
class Dispatch:
    """An event running on a PE and the context it interrupted."""

    event: EventDef
    regs: list[int]                 # x0-x17
    pc: int
    pstate: int


@dataclass
class PeState:
    masked: bool = True             # every PE starts masked (TF-A sdei_cpu_on_init)
    stack: list[Dispatch] = field(default_factory=list)
    private: dict[int, Registration] = field(default_factory=dict)
    taken: int = 0                  # events dispatched on this PE


class SdeiBoard(Protocol):
    """What the dispatcher needs of the board."""

    def current_cpu(self) -> int: ...

    def cpu_index_of(self, mpidr: int) -> int | None: ...

    def valid_entry(self, cpu: Cpu, va: int) -> bool: ...

    def kick(self, index: int) -> None: ...


def is_sdei_call(fid: int) -> bool:
    return SDEI_FN_BASE <= fid <= SDEI_FN_LAST


class SdeiDispatcher:
    def __init__(self, board: SdeiBoard, num_pes: int, events: Iterable[EventDef] = (),
                 event_log: EventLog | None = None) -> None:
        self._board = board
        self._log = event_log or EventLog()       # `notify` events (armras.events)
        self.events: dict[int, EventDef] = {EVENT_SIGNAL_NUMBER: EventDef(EVENT_SIGNAL_NUMBER, signalable=True)}
        for e in events:
            if e.number in self.events:
                raise ArmrasError(f"SDEI event {e.number} is defined twice")
            self.events[e.number] = e
        self.pes = [PeState(private={n: Registration() for n, e in self.events.items() if not e.shared})
                    for _ in range(num_pes)]
        self.shared = {n: Registration() for n, e in self.events.items() if e.shared}

    # --- state ---------------------------------------------------------------------------
    def _registration(self, event: EventDef, pe: int) -> Registration:
        return self.shared[event.number] if event.shared else self.pes[pe].private[event.number]

    def registration(self, number: int, pe: int) -> Registration | None:
        event = self.events.get(number)
        return None if event is None else self._registration(event, pe)

    def reset_pe(self, pe: int) -> None:
        """A PE leaves reset (PSCI CPU_ON): its private events cleared, SDEI masked."""
        taken = self.pes[pe].taken
        self.pes[pe] = PeState(private={n: Registration() for n, e in self.events.items() if not e.shared},
                               taken=taken)

    # --- the board raises events ---------------------------------------------------------------
    def check_trigger(self, number: int, cpu: int) -> Registration:
        """The registration event `number` would be raised in; ArmrasError if the guest has
        not registered it (TF-A drops a trigger of an unregistered event)."""
        event = self.events.get(number)
        if event is None:
            raise ArmrasError(f"SDEI event {number} does not exist on this board")
        reg = self._registration(event, cpu)
        if not reg.state & State.REGISTERED:
            raise ArmrasError(f"SDEI event {number} is not registered by the guest"
                              + ("" if event.shared else f" on CPU {cpu}")
                              + "; firmware would drop this notification")
        return reg

    def trigger(self, number: int, cpu: int) -> int:
        """Make event `number` pending for PE `cpu` (a shared event: its routed PE). Returns the
        PE it will run on; refused (ArmrasError) if the guest has not registered it there."""
        reg = self.check_trigger(number, cpu)
        event = self.events[number]
        target = cpu
        if event.shared and reg.flags == REGF_RM_PE:
            routed = self._board.cpu_index_of(reg.affinity)
            target = cpu if routed is None else routed
        reg.pending = True
        log.info("SDEI event %d pending for CPU %d (state %s)", number, target, _state_text(reg.state))
        if target != self._board.current_cpu():
            self._board.kick(target)
        return target

    def deliverable(self, pe: int) -> tuple[EventDef, Registration] | None:
        """The event PE `pe` would take now, if any (critical first, then lowest number)."""
        state = self.pes[pe]
        if state.masked:
            return None
        if state.stack and (len(state.stack) > 1 or state.stack[-1].event.priority is SdeiPriority.CRITICAL):
            return None
        best: tuple[EventDef, Registration] | None = None
        for number, event in sorted(self.events.items()):
            if state.stack and event.priority is not SdeiPriority.CRITICAL:
                continue                  # only a critical event preempts a running normal one
            reg = self._registration(event, pe)
            if not reg.pending or reg.state != State.REGISTERED | State.ENABLED:
                continue
            if event.shared and reg.flags == REGF_RM_PE and self._board.cpu_index_of(reg.affinity) not in (pe, None):
                continue
            if best is None or event.priority > best[0].priority:
                best = (event, reg)
        return best

    def dispatch_pending(self, cpu: Cpu, pe: int) -> bool:
        """Enter the handler of the event PE `pe` (the running CPU) should take now, if any."""
        found = self.deliverable(pe)
        if found is None:
            return False
        event, reg = found
        reg.pending = False
        reg.transition(Action.DISPATCH)
        regs = cpu.xs(SAVED_GPREGS)
        pc, pstate = cpu.pc, cpu.pstate
        self.pes[pe].stack.append(Dispatch(event, regs, pc, pstate))
        self.pes[pe].taken += 1
        for n, value in enumerate((event.number, reg.arg, pc, pstate)):
            cpu.set_x(n, value)
        cpu.eret_to(reg.entry, PSTATE_EL1H | PSTATE_DAIF)
        log.info("SDEI event %d dispatched on CPU %d: handler %#x, interrupted %#x (PSTATE %#x)",
                 event.number, pe, reg.entry, pc, pstate)
        self._log.emit("notify", kind="sdei", cpu=pe, sdei_event=event.number, handler=f"{reg.entry:#x}",
                       pc=f"{pc:#x}")
        return True

    # --- the guest's calls -----------------------------------------------------------------------
    def call(self, cpu: Cpu, fid: int, args: list[int]) -> int | None:
        """One SDEI call from the running PE; returns x0, or None when the call has already
        set the CPU's registers (a successful COMPLETE resumes another context)."""
        pe = self._board.current_cpu()
        x1, x2, x3, x4, x5 = args[1:6]
        if fid not in KNOWN_FNS:
            return NOT_SUPPORTED
        if fid == VERSION:
            return SDEI_VERSION_VALUE
        if fid == FEATURES:
            return 0 if x1 == FEATURE_BIND_SLOTS else INVALID_PARAMETERS
        if fid == PE_MASK:
            was = not self.pes[pe].masked
            self.pes[pe].masked = True
            return int(was)
        if fid == PE_UNMASK:
            self.pes[pe].masked = False
            return SUCCESS
        if fid == PRIVATE_RESET:
            return self._reset(pe, shared=False)
        if fid == SHARED_RESET:
            return self._reset(pe, shared=True)
        if fid in (INTERRUPT_BIND, INTERRUPT_RELEASE):
            # No bind slots (FEATURES(0) = 0): every interrupt stays the OS's.
            return OUT_OF_RESOURCE if fid == INTERRUPT_BIND else INVALID_PARAMETERS
        if fid in (EVENT_COMPLETE, EVENT_COMPLETE_AND_RESUME):
            return self._complete(cpu, pe, resume=fid == EVENT_COMPLETE_AND_RESUME, address=x1)
        if fid == EVENT_CONTEXT:
            stack = self.pes[pe].stack
            if x1 >= SAVED_GPREGS:          # checked first, as TF-A's sdei_event_context
                return INVALID_PARAMETERS
            if not stack:
                return DENIED
            return stack[-1].regs[x1]
        event = self.events.get(_event_number(x1))
        if event is None or x1 > 0xFFFF_FFFF:
            return INVALID_PARAMETERS
        if fid == EVENT_SIGNAL:
            return self._signal(event, x2)
        reg = self._registration(event, pe)
        if fid == EVENT_REGISTER:
            return self._register(cpu, event, reg, entry=x2, arg=x3, flags=x4, affinity=x5)
        if fid == EVENT_ENABLE:
            return SUCCESS if reg.transition(Action.ENABLE) else DENIED
        if fid == EVENT_DISABLE:
            return SUCCESS if reg.transition(Action.DISABLE) else DENIED
        if fid == EVENT_UNREGISTER:
            return self._unregister(reg)
        if fid == EVENT_STATUS:
            return int(reg.state)
        if fid == EVENT_GET_INFO:
            return self._get_info(event, reg, x2)
        if fid == EVENT_ROUTING_SET:
            return self._routing_set(event, reg, flags=x2, affinity=x3)
        return NOT_SUPPORTED

    def after_call(self, cpu: Cpu) -> None:
        """After a call has set x0: an event it made runnable here is taken now, and a PE it
        made runnable elsewhere is woken."""
        pe = self._board.current_cpu()
        self.dispatch_pending(cpu, pe)
        for other in range(len(self.pes)):
            if other != pe and self.deliverable(other) is not None:
                self._board.kick(other)

    def _register(self, cpu: Cpu, event: EventDef, reg: Registration, *, entry: int, arg: int, flags: int,
                  affinity: int) -> int:
        if entry == 0 or entry % 4 or not self._board.valid_entry(cpu, entry):
            return INVALID_PARAMETERS
        if flags not in (REGF_RM_ANY, REGF_RM_PE):
            return INVALID_PARAMETERS
        if flags == REGF_RM_PE and self._board.cpu_index_of(affinity & MPIDR_AFFINITY_MASK) is None:
            return INVALID_PARAMETERS
        if not event.shared:
            flags, affinity = REGF_RM_PE, 0        # private events always target the calling PE
        if not reg.transition(Action.REGISTER):
            return DENIED
        reg.entry, reg.arg, reg.flags, reg.affinity = entry, arg, flags, affinity & MPIDR_AFFINITY_MASK
        reg.pending = False                         # TF-A clears triggers that came before registration
        return SUCCESS

    def _unregister(self, reg: Registration) -> int:
        if not reg.transition(Action.UNREGISTER):
            return PENDING if reg.state & State.RUNNING else DENIED
        reg.clear_client()
        reg.pending = False
        return PENDING if reg.state & State.RUNNING else SUCCESS

    def _get_info(self, event: EventDef, reg: Registration, info: int) -> int:
        if info == INFO_EV_TYPE:
            return int(event.shared)
        if info == INFO_EV_SIGNALED:
            return int(event.signalable)
        if info == INFO_EV_PRIORITY:
            return int(event.priority)
        if info in (INFO_EV_ROUTING_MODE, INFO_EV_ROUTING_AFF):
            if not event.shared:
                return INVALID_PARAMETERS
            if not reg.state & State.REGISTERED:
                return DENIED
            if info == INFO_EV_ROUTING_MODE:
                return int(reg.flags == REGF_RM_PE)
            return reg.affinity if reg.flags == REGF_RM_PE else INVALID_PARAMETERS
        return INVALID_PARAMETERS

    def _routing_set(self, event: EventDef, reg: Registration, *, flags: int, affinity: int) -> int:
        if flags not in (REGF_RM_ANY, REGF_RM_PE):
            return INVALID_PARAMETERS
        if flags == REGF_RM_PE and self._board.cpu_index_of(affinity & MPIDR_AFFINITY_MASK) is None:
            return INVALID_PARAMETERS
        if not event.shared:
            return INVALID_PARAMETERS
        if not reg.transition(Action.ROUTING):
            return DENIED
        reg.flags = flags
        if flags == REGF_RM_PE:
            reg.affinity = affinity & MPIDR_AFFINITY_MASK
        return SUCCESS

    def _signal(self, event: EventDef, target_mpidr: int) -> int:
        if not event.signalable:
            return INVALID_PARAMETERS
        target = self._board.cpu_index_of(target_mpidr & MPIDR_AFFINITY_MASK)
        if target is None or self.pes[target].masked:
            return INVALID_PARAMETERS
        reg = self.pes[target].private[event.number]
        if reg.state & (State.REGISTERED | State.ENABLED) != State.REGISTERED | State.ENABLED:
            return INVALID_PARAMETERS
        reg.pending = True
        if target != self._board.current_cpu():
            self._board.kick(target)
        return SUCCESS

    def _reset(self, pe: int, *, shared: bool) -> int:
        regs = self.shared.values() if shared else self.pes[pe].private.values()
        result = SUCCESS
        for reg in regs:
            if reg.state == State(0):
                continue
            if self._unregister(reg) == PENDING:
                result = DENIED
        return result

    def _complete(self, cpu: Cpu, pe: int, *, resume: bool, address: int) -> int | None:
        stack = self.pes[pe].stack
        if not stack:
            return DENIED
        if resume and (address % 4 or not self._board.valid_entry(cpu, address)):
            return DENIED
        top = stack[-1]
        reg = self._registration(top.event, pe)
        if not reg.transition(Action.COMPLETE_RESUME if resume else Action.COMPLETE):
            return DENIED
        stack.pop()
        for n, value in enumerate(top.regs):
            cpu.set_x(n, value)
        if resume:
            # As if an exception had been taken at `address` from the interrupted context.
            cpu.set_elr_spsr(top.pc, top.pstate)
            cpu.eret_to(address, PSTATE_EL1H | PSTATE_DAIF)
        else:
            cpu.eret_to(top.pc, top.pstate)
        log.debug("SDEI event %d completed on CPU %d%s", top.event.number, pe,
                  f", resuming at {address:#x}" if resume else "")
        return None


def _event_number(x1: int) -> int:
    """Event numbers are 32-bit signed (DEN 0054 4.1): a negative one exists nowhere."""
    return x1 if x1 <= 0x7FFF_FFFF else -1


def _state_text(state: State) -> str:
    return "|".join(s.name.lower() for s in State if s in state) or "unregistered"  # type: ignore[union-attr]


__all__ = [
    "DENIED", "INVALID_PARAMETERS", "NOT_SUPPORTED", "OUT_OF_RESOURCE", "PENDING", "SUCCESS",
    "EventDef", "SdeiBoard", "SdeiDispatcher", "State", "is_sdei_call",
]
