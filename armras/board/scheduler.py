"""The run loop: the board's vCPUs time-share one Unicorn core, and host-side work runs between slices.

Like QEMU's single-threaded TCG loop (accel/tcg/tcg-accel-ops-rr.c) and TinyEMU's split of
"run up to N cycles" from "time to the next event", the loop is apart from the board
(armras.board.machine, which wires devices and owns RAS policy). Each turn it:

1. services what is due: instruction-count and guest-time events, actions other threads
   deferred (injections, control-socket commands), the timers' interrupt lines;
2. picks the CPU that runs next, round-robin in slices of SLICE_INSNS instructions
   (armras.board.vcpu says what a CPU keeps while it waits), or idles when every CPU is
   in WFI by jumping guest time to the next deadline;
3. delivers to that CPU what is pending for it (a held SEA, SDEI events, an SError when
   PSTATE.A allows, an IRQ when PSTATE.I allows);
4. runs it until something stops it: the alarm thread at the next host deadline, the
   block hook at an instruction count, a hook that asked (firmware call, MMIO), or WFI.

Only the thread running an exception/firmware hook (UC_HOOK_INTR) may stop the CPU
directly; every other stop goes through the block hook so it lands on a block boundary
(see request_stop).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from unicorn import (
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_READ_PROT,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_PROT,
    UC_ERR_WRITE_UNMAPPED,
    Uc,
    UcError,
)
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TB_FLUSH, UC_CTL_TLB_FLUSH
from unicorn.unicorn_py3.unicorn import UcContext

from armras.arch.cpu import PSTATE_A, PSTATE_I, VECTOR_IRQ, Cpu, GuestFault
from armras.arch.hooks import BlockHook, ICacheMaintenance, SysregTrap
from armras.board.vcpu import MPIDR_RES1, VMPIDR_EL2, Power, VCpu
from armras.devices.gicv2 import GicV2
from armras.errors import ArmrasError
from armras.firmware.sdei import SdeiDispatcher
from armras.timing.clock import Alarm
from armras.timing.guesttime import DeterministicClock

log = logging.getLogger(__name__)

RUN_UNTIL = 0xFFFF_FFFF_FFFF_FFFC   # never reached: emu_start runs until stopped
POLL_QUANTUM = 0.05                 # host seconds between stops when nothing is due
MASKED_IRQ_POLL = 0.0005            # re-check this often while an IRQ waits for PSTATE.I
MAX_HOST_WAIT = 1.0                 # longest single host sleep: guest deadlines can be ~2^64 ticks away
SEA_HOLD_LIMIT = 1 << 24            # instructions an injected SEA may wait for a safe point
SLICE_INSNS = 100_000               # instructions a CPU runs before the next runnable one gets its turn
MAX_STEP_RETRIES = 100            # a debugger's step stopped this often before its instruction: reported as is
MAX_STOP_MARK = 1 << 62             # instruction stops beyond this are never reached (the native counter is u64)

EXIT_TIMEOUT = 124
EXIT_INSN_LIMIT = 125

# Unicorn's errors for an access the board cannot complete: an external abort in the guest.
BUS_ERRORS = (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_FETCH_UNMAPPED,
              UC_ERR_READ_PROT, UC_ERR_WRITE_PROT, UC_ERR_FETCH_PROT)


class RunawayGuest(ArmrasError):
    """The guest hit a time or instruction limit without powering off."""


@dataclass
class RunLimits:
    timeout: float | None = None       # wall-clock seconds
    max_insns: int | None = None       # guest instructions


@dataclass
class _Pending:
    """A host-side action waiting for the CPU to stop (run between slices)."""

    action: Callable[[], None]
    description: str


class Counter(Protocol):
    """The system counter as the loop needs it (armras.timing.guesttime)."""

    frequency: int

    def restart(self) -> None: ...
    def guest_seconds(self) -> float: ...
    def seconds(self, ticks: int) -> float: ...
    def skip(self, ticks: int) -> None: ...
    def freeze(self) -> None: ...
    def thaw(self) -> None: ...
    def load_cpu(self) -> None: ...


class Board(Protocol):
    """What the run loop needs from the board (armras.board.machine.Machine)."""

    cpu: Cpu
    uc: Uc
    blocks: BlockHook
    sysregs: SysregTrap
    gic: GicV2
    counter: Counter
    det: DeterministicClock | None
    vcpus: list[VCpu]
    sdei: SdeiDispatcher
    icache: ICacheMaintenance
    exit_status: int | None

    def sea_safe_at(self, pc: int) -> bool: ...
    def enter_sea(self, *, instruction: bool) -> None: ...
    def take_held_sea(self) -> None: ...
    def take_serror(self, v: VCpu) -> None: ...
    def watch_esb(self, on: bool) -> None: ...
    def handle_bus_error(self, err: UcError) -> None: ...
    def flush_console(self) -> None: ...
    def between_slices(self) -> None: ...


class Scheduler:
    """Runs a board's vCPUs round-robin on its one core; host actions happen between slices."""

    def __init__(self, board: Board, limits: RunLimits, reset_context: UcContext) -> None:
        self.board = board
        self.limits = limits
        self._reset_context = reset_context      # how a CPU comes out of reset (PSCI CPU_ON)
        self.current = 0                         # index of the vCPU on the core
        self._slice_end = SLICE_INSNS            # instruction count at which it yields the core
        self._woke_from_wfi = False              # the CPU just picked was waiting in WFI
        self._stop_requested = False
        self.wfi_requested = False               # PSCI CPU_SUSPEND: idle as for WFI
        self._hook_error: BaseException | None = None
        # The thread running an exception/firmware hook (UC_HOOK_INTR), while it runs: only
        # there may the CPU be stopped directly. A uc_emu_stop() anywhere else (another
        # thread, an MMIO or MRS/MSR hook) is taken at Unicorn's next exit check, which
        # follows a load/store: the CPU then restarts that instruction after its access
        # was done, replaying MMIO and breaking LDXR/STXR atomics (a second STXR fails,
        # so the loop adds twice). Everything else asks the block hook (armras.arch.hooks).
        self.intr_thread: int | None = None
        self._pending: collections.deque[_Pending] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._insn_events: list[tuple[int, _Pending]] = []
        self._time_events: list[tuple[float, _Pending]] = []
        self._deadline_wall: float | None = None  # --timeout, as a time.monotonic() value
        self._started = False
        self.paused = False                      # stopped from the control socket (pause/resume)
        self.tb_flushes = 0                      # translation flushes the guest's IC IALLU/IVAU asked for
        self.external_wakeups: Callable[[], bool] = lambda: False   # can anything outside wake an idle guest?
        self.alarm = Alarm(self.request_stop)
        # A debugger (armras.drive.gdbstub): run the current CPU for one instruction, or
        # stop before a hooked instruction; either way the guest is then paused and
        # `debug_stopped` (if set) is told, on the CPU thread.
        self.single_step = False
        self.step_range: tuple[int, int] | None = None   # keep stepping while the PC is in [begin, end)
        self.debug_stopped: Callable[[], None] | None = None
        self._debug_stop = False
        self._stepped = False                    # translations made for a step carry Unicorn's count hook
        self._step_retries = 0

    @property
    def instructions(self) -> int:
        return self.board.blocks.instructions

    # --- stopping and waking ---------------------------------------------------------
    def request_stop(self) -> None:
        """Stop the CPU at the next instruction boundary (any thread, any hook).

        From an exception/firmware hook the CPU stops right there (PSCI SYSTEM_OFF must
        not run on); otherwise the block hook stops it at the next block boundary.
        """
        self._stop_requested = True
        self._wake.set()
        if self.intr_thread == threading.get_ident():
            self.board.uc.emu_stop()
        else:
            self.board.blocks.request_stop()

    def hook_failed(self, error: BaseException) -> None:
        """A Unicorn callback raised: the run ends with that error at the next stop."""
        if self._hook_error is None:
            self._hook_error = error
        self.request_stop()

    def rearm(self) -> None:
        """A deadline moved (a timer was programmed): recompute when the CPU must stop."""
        if self.board.det is not None:
            self.board.blocks.stop_at(self._next_instruction_stop())
        self.alarm.arm(self._next_deadline())

    # --- debugger hook points (armras.drive.gdbstub) ------------------------------------
    def stop_before(self, pc: int) -> None:
        """From a code or memory hook on the CPU thread: stop with the CPU at `pc`, the
        instruction there not (or, for a memory hook, not yet wholly) executed, then pause
        and tell the debugger (a breakpoint or watchpoint hit)."""
        self.board.blocks.stopped_inside_block(pc)
        self._debug_stop = self._stop_requested = True
        self.board.uc.emu_stop()

    def drop_translations(self) -> None:
        """Forget translated code and the softmmu TLB (code or memory hooks changed, or a
        debugger wrote guest memory): what runs next is translated with them."""
        self.board.uc.ctl(UC_CTL_TB_FLUSH, UC_CTL_IO_WRITE)
        self.board.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    def focus(self, index: int) -> None:
        """Put CPU `index` on the core now (a debugger steps that thread); CPU thread only."""
        if index != self.current and 0 <= index < len(self.board.vcpus) and self.runnable(self.board.vcpus[index]):
            self._switch_to(index)
            self._slice_end = self.instructions + SLICE_INSNS

    def context_of(self, index: int) -> UcContext:
        """The saved registers of CPU `index` (not on the core): out of reset if it never ran."""
        return self.board.vcpus[index].context or self._reset_context

    def _debug_check(self, stepping: bool) -> None:
        """After a slice: a step or a breakpoint/watchpoint stop pauses the guest for the debugger."""
        if stepping and not self._debug_stop and self.step_range is not None:
            begin, end = self.step_range
            if begin <= self.board.cpu.pc < end and self.board.exit_status is None:
                return        # range stepping: on, without a round trip to the debugger
        if stepping or self._debug_stop:
            self.single_step = self._debug_stop = False
            self.step_range = None
            self.pause()
            if self.debug_stopped is not None:
                self.debug_stopped()

    # --- host-side actions -----------------------------------------------------------
    def defer(self, action: Callable[[], None], description: str) -> None:
        """Run `action` at the next stop of the CPU (thread-safe)."""
        with self._lock:
            self._pending.append(_Pending(action, description))
        self.request_stop()

    def at_guest_time(self, seconds: float, action: Callable[[], None], description: str) -> None:
        self._time_events.append((seconds, _Pending(action, description)))
        self._time_events.sort(key=lambda e: e[0])

    def at_instruction(self, count: int, action: Callable[[], None], description: str) -> None:
        self._insn_events.append((count, _Pending(action, description)))
        self._insn_events.sort(key=lambda e: e[0])

    # --- pausing (control socket stop/cont) -------------------------------------------
    def pause(self) -> None:
        """Stop running the guest until resume(); its virtual time is frozen meanwhile."""
        if not self.paused:
            self.paused = True
            self.board.counter.freeze()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.board.counter.thaw()
        self._wake.set()

    # --- the loop ----------------------------------------------------------------------
    def run(self) -> float:
        """Run until the board powers off (or a limit/fault raises); returns wall seconds."""
        b = self.board
        start = time.monotonic()
        self._deadline_wall = start + self.limits.timeout if self.limits.timeout else None
        if not self._started:
            self._started = True
            b.counter.restart()   # guest time starts at the first instruction
            self._slice_end = SLICE_INSNS
        try:
            while b.exit_status is None:
                self._service()
                if b.exit_status is not None:
                    break
                self._check_limits()
                if self.paused:
                    self._wait_while_paused()
                    continue
                if not self._pick_cpu():
                    self._idle()     # every CPU waits for an interrupt (or is off)
                    continue
                if b.blocks.tb_flush_pending:
                    self._flush_translations()
                self._deliver()
                self._run_slice()
        finally:
            self.alarm.disarm()
            b.flush_console()
        return time.monotonic() - start

    def _run_slice(self) -> None:
        b = self.board
        self.alarm.arm(self._next_deadline())
        self._stop_requested = self.wfi_requested = False
        self._wake.clear()
        b.blocks.clear()
        b.blocks.stop_at(self._next_instruction_stop())
        # A step runs one instruction: Unicorn counts only in code translated with its count
        # hook, so translations are dropped before a step and once more after the last one.
        stepping, start = self.single_step, b.cpu.pc
        if stepping != self._stepped:
            self.drop_translations()
            self._stepped = stepping
        try:
            b.uc.emu_start(start, RUN_UNTIL, count=1 if stepping else 0)
        except UcError as e:
            if self._hook_error is not None:
                raise self._raise_hook_error() from None
            if e.errno in BUS_ERRORS:
                b.handle_bus_error(e)
                self._debug_check(stepping)
                return
            raise GuestFault(f"CPU stopped at {b.cpu.pc:#x}: {e}") from None
        if self._hook_error is not None:
            raise self._raise_hook_error()
        if stepping and b.blocks.stopped_cpu and b.cpu.pc == start and not self._debug_stop:
            self._step_retries += 1
            if self._step_retries < MAX_STEP_RETRIES:
                return      # stopped before the instruction ran (a host request): step it next turn
        self._step_retries = 0
        if b.blocks.stopped_for_sea and b.exit_status is None:
            b.take_held_sea()
            self._debug_check(stepping)
            return
        # Neither we nor the block hook stopped it: the guest executed WFI (a stepped WFI
        # completes at once, which the architecture allows).
        wfi = not self._stop_requested and not b.blocks.stopped_cpu and not stepping
        if (wfi or self.wfi_requested) and b.exit_status is None:
            if b.blocks.sea_held:
                # An idle CPU is not inside an exception entry: the held SEA is taken here.
                b.blocks.clear_sea()
                b.enter_sea(instruction=False)
            else:
                b.vcpus[self.current].waiting = True
        if b.exit_status is None:
            self._debug_check(stepping)

    def _flush_translations(self) -> None:
        """Drop the translations the guest's instruction cache maintenance invalidated."""
        if self.board.icache.apply(self.board.cpu.current_el):
            self.tb_flushes += 1

    def _raise_hook_error(self) -> BaseException:
        error, self._hook_error = self._hook_error, None
        assert error is not None
        return error

    def _check_limits(self) -> None:
        if self._deadline_wall is not None and time.monotonic() >= self._deadline_wall:
            err = RunawayGuest(f"guest did not power off within {self.limits.timeout:g} s (wall clock)")
            err.exit_code = EXIT_TIMEOUT
            raise err
        if self.limits.max_insns is not None and self.instructions >= self.limits.max_insns:
            err = RunawayGuest(f"guest did not power off within {self.limits.max_insns} instructions")
            err.exit_code = EXIT_INSN_LIMIT
            raise err

    def _service(self) -> None:
        """Between slices: due events, host actions, the timers' interrupt lines."""
        while self._insn_events and self.instructions >= self._insn_events[0][0]:
            self._run_action(self._insn_events.pop(0)[1])
        if self._time_events:
            now = self.board.counter.guest_seconds()
            while self._time_events and self._time_events[0][0] <= now:
                self._run_action(self._time_events.pop(0)[1])
        while True:
            with self._lock:
                if not self._pending:
                    break
                item = self._pending.popleft()
            self._run_action(item)
        for v in self.board.vcpus:
            v.timer.update()
        self.board.between_slices()

    @staticmethod
    def _run_action(item: _Pending) -> None:
        log.info("%s", item.description)
        item.action()

    # --- deadlines -----------------------------------------------------------------------
    def _next_deadline(self) -> float | None:
        b = self.board
        if b.det is not None:   # deadlines are instruction counts (stop_at); only --timeout is wall time
            return self._deadline_wall
        now = time.monotonic()
        quantum = MASKED_IRQ_POLL if b.gic.irq_asserted(self.current) else POLL_QUANTUM
        deadline = now + quantum
        for ticks in self._timer_ticks():
            deadline = min(deadline, now + b.counter.seconds(ticks))
        if self._time_events:
            wait = self._time_events[0][0] - b.counter.guest_seconds()
            deadline = min(deadline, now + max(wait, 0.0))
        if self._deadline_wall is not None:
            deadline = min(deadline, self._deadline_wall)
        return deadline

    def _timer_ticks(self, virtual: bool | None = None) -> list[int]:
        """Ticks until each armed timer of every powered CPU fires (both kinds by default)."""
        kinds = (True, False) if virtual is None else (virtual,)
        return [t for v in self.board.vcpus if v.power is not Power.OFF for k in kinds
                if (t := v.timer.ticks_until_next(k)) is not None]

    def _next_instruction_stop(self) -> int | None:
        b = self.board
        marks = [c for c in (self.limits.max_insns, self._insn_events[0][0] if self._insn_events else None)
                 if c is not None]
        if len(b.vcpus) > 1 and any(self.runnable(v) for v in b.vcpus if v.index != self.current):
            marks.append(self._slice_end)     # another CPU waits for the core (a waking one stops it)
        if b.det is not None:
            marks += b.det.stop_marks(self.instructions, self._time_events[0][0] if self._time_events else None)
        return min(min(marks), MAX_STOP_MARK) if marks else None

    # --- choosing and switching CPUs ----------------------------------------------------
    def runnable(self, v: VCpu) -> bool:
        if v.power is Power.OFF:
            return False
        # WFI ends on an interrupt the GIC signals to the CPU, whether or not PSTATE.I masks it,
        # on an SDEI event (firmware's interrupt), and on a pending SError, masked or not
        # (Arm ARM: WFI wake-up events).
        return (v.start is not None or v.sea_held or v.serror is not None or not v.waiting
                or self.board.gic.irq_asserted(v.index) or self.board.sdei.deliverable(v.index) is not None)

    def _pick_cpu(self) -> bool:
        """Put the CPU that runs next on the core (round-robin in slices); False if none can run."""
        vcpus = self.board.vcpus
        n = len(vcpus)
        order = [(self.current + k) % n for k in range(n)]
        if n > 1 and self.instructions >= self._slice_end:
            order = order[1:] + order[:1]          # the running CPU's slice is over
            self._slice_end = self.instructions + SLICE_INSNS
        for index in order:
            v = vcpus[index]
            if self.runnable(v):
                if index != self.current:
                    self._switch_to(index)
                    self._slice_end = self.instructions + SLICE_INSNS
                self._woke_from_wfi, v.waiting = v.waiting, False
                return True
        return False

    def _switch_to(self, index: int) -> None:
        """Save the running CPU's registers, load CPU `index`'s (see armras.board.vcpu)."""
        b = self.board
        uc = b.uc
        out, into = b.vcpus[self.current], b.vcpus[index]
        if b.blocks.sea_held:                      # a held SEA belongs to the CPU, not the core
            out.sea_held = True
            b.blocks.clear_sea()
        if out.context is None:
            out.context = uc.context_save()
        else:
            uc.context_update(out.context)
        out.disr, b.sysregs.disr = b.sysregs.disr, into.disr
        if into.start is not None:                 # first run after PSCI CPU_ON: out of reset
            entry, context_id = into.start
            into.start = None
            uc.context_restore(self._reset_context)
            uc.cpr_write(*VMPIDR_EL2, MPIDR_RES1 | into.mpidr)
            b.cpu.set_x(0, context_id)
            b.cpu.pc = entry
            b.cpu.enter_el1_reset_state()
            into.power = Power.ON
        else:
            assert into.context is not None
            uc.context_restore(into.context)
        # The softmmu TLB and the jump cache are not tagged by CPU (each CPU has its own
        # translation tables); translated code is shared and stays.
        uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        self.current = index
        b.counter.load_cpu()

    def _deliver(self) -> None:
        """The running CPU's held SEA, pending SError and pending IRQ, before it runs again."""
        b = self.board
        cpu = b.cpu
        v = b.vcpus[self.current]
        if v.sea_held:
            v.sea_held = False
            # A CPU in WFI is not inside an exception entry: it takes the SEA where it idled.
            if self._woke_from_wfi or b.sea_safe_at(cpu.pc):
                b.enter_sea(instruction=False)
            else:
                b.blocks.hold_sea(self.instructions + SEA_HOLD_LIMIT)
        # SDEI events are firmware (EL3) interrupts: PSTATE.I/F at EL1 do not mask them.
        b.sdei.dispatch_pending(cpu, self.current)
        watch = 0
        if v.serror is not None and b.exit_status is None:
            if cpu.serror_masked:
                watch |= PSTATE_A        # pending, as in hardware, until the guest clears PSTATE.A
            else:
                b.take_serror(v)
        # A debugger's single step holds IRQs back (as QEMU's gdbstub, SSTEP_NOIRQ).
        pending = b.exit_status is None and b.gic.irq_asserted(self.current) and not self.single_step
        if pending and not cpu.irq_masked:
            cpu.take_exception(VECTOR_IRQ, elr=cpu.pc)
            pending = False
        # An IRQ (SError) the guest has masked is taken the moment it unmasks (the block
        # hook stops the CPU there), not at the next poll; a masked SError is deferred
        # instead if the guest executes ESB first.
        b.blocks.watch_unmask(watch | (PSTATE_I if pending else 0))
        b.watch_esb(bool(watch & PSTATE_A))

    # --- idling ---------------------------------------------------------------------------
    def _idle(self) -> None:
        """Every CPU is in WFI: jump time to the next deadline, or wait for the host."""
        b = self.board
        if self._pending:
            return
        b.flush_console()      # a prompt without a newline shows while the guest waits
        if b.det is not None and b.det.skip_to_next_deadline(
                self._time_events[0][0] if self._time_events else None):
            return
        candidates = self._timer_ticks(virtual=True)
        if self._time_events:
            ahead = self._time_events[0][0] - b.counter.guest_seconds()
            candidates.append(max(0, int(ahead * b.counter.frequency)))
        physical = self._timer_ticks(virtual=False)
        pt = min(physical) if physical else None
        if candidates and (pt is None or min(candidates) <= pt):
            b.counter.skip(min(candidates))
            return
        if pt is not None:
            self._wake.wait(min(b.counter.seconds(pt), MAX_HOST_WAIT))
            return
        # The counter moved on since the last update: a timer may have fired in between.
        for v in b.vcpus:
            v.timer.update()
        if any(self.runnable(v) for v in b.vcpus):
            return
        if not self.external_wakeups():
            timers = "; ".join(f"CPU{v.index}: {v.timer.describe()}" for v in b.vcpus if v.power is Power.ON)
            raise GuestFault("guest is waiting for an interrupt (WFI) with no timer armed and nothing "
                             f"that could wake it ({timers}; {b.gic.describe()})")
        # Only something from outside (a control command) can wake the guest now.
        self._wake.wait(POLL_QUANTUM)

    def _wait_while_paused(self) -> None:
        """Paused: only host-side actions (deferred, e.g. control commands) run."""
        self._wake.clear()
        if not self._pending:
            self._wake.wait(POLL_QUANTUM)

    def close(self) -> None:
        self.alarm.close()


__all__ = ["BUS_ERRORS", "EXIT_INSN_LIMIT", "EXIT_TIMEOUT", "POLL_QUANTUM", "SEA_HOLD_LIMIT", "SLICE_INSNS",
           "RunLimits", "RunawayGuest", "Scheduler"]
