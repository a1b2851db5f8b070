"""Guest time policies on top of the system counter: freezing while stopped, and
deterministic (instruction-driven) time.

Default (host) time: the counters are Unicorn's, derived from the host's monotonic
clock (armras.timing.clock.SystemCounter). `PausableCounter` only adds freeze/thaw so that a
guest stopped from the control socket does not see the pause as a jump of its virtual
counter (QEMU stops the virtual clock while the VM is stopped too).

Deterministic time (`armras run --deterministic`, scenario key `deterministic = true`):
the system counter advances with guest instructions instead of host time,

    physical count = instructions * TICKS_PER_INSN + ticks skipped by WFI
    virtual count  = physical count - (physical count when the guest started)

at the board's CNTFRQ of 62.5 MHz, i.e. one instruction is one 16 ns tick (a 62.5 MIPS
guest: plausible for an in-order core, and Linux's delay calibration stays sane).
Guest reads of CNTVCT_EL0/CNTPCT_EL0 (and the self-synchronised variants) are trapped
in the MRS hook and served from that count, timer deadlines and `at=` injections are
turned into instruction counts for the block hook's `stop_at` (no wall-clock alarm),
WFI jumps the count to the next deadline, and the PL031 RTC reads RTC_EPOCH plus guest
seconds. Two runs of the same guest with the same inputs then take the same stops at
the same instructions and print byte-identical consoles; only input from outside (the
control socket) can break that.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Iterable

from unicorn.arm64_const import UC_ARM64_REG_PC

from armras.timing.clock import CNTFRQ_EL0, SystemCounter

if TYPE_CHECKING:
    from unicorn import Uc

    from armras.arch.hooks import BlockHook
    from armras.devices.timer import GenericTimer

TICKS_PER_INSN = 1                 # counter ticks per guest instruction (62.5 MHz CNTFRQ)
RTC_EPOCH = 1_704_067_200          # 2024-01-01T00:00:00Z: the PL031's reading at guest time 0

# (op0, op1, CRn, CRm, op2) of the counter registers served in deterministic mode.
_CNTPCT = (3, 3, 14, 0, 1)
_CNTVCT = (3, 3, 14, 0, 2)
_CNTPCTSS = (3, 3, 14, 0, 5)
_CNTVCTSS = (3, 3, 14, 0, 6)


class PausableCounter(SystemCounter):
    """The host-time system counter, whose virtual count can be frozen while stopped.

    While frozen, everything the platform derives from guest time (timer deadlines,
    `at=` injections, query-status) sees the value frozen at; the guest itself is not
    running, so Unicorn's own counter moving on is never observed. thaw() moves
    CNTVOFF so the guest resumes counting from that value.
    """

    def __init__(self, uc: Uc) -> None:
        self._frozen_at: int | None = None
        super().__init__(uc)

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def virtual_count(self) -> int:
        if self._frozen_at is not None:
            return self._frozen_at
        return super().virtual_count()

    def freeze(self) -> None:
        if self._frozen_at is None:
            self._frozen_at = self.virtual_count()

    def thaw(self) -> None:
        """Resume counting from the value frozen at (virtual = physical - CNTVOFF)."""
        if self._frozen_at is not None:
            self._set_offset(self.physical_count() - self._frozen_at)
            self._frozen_at = None


class InstructionCounter:
    """The system counter in deterministic mode: ticks are guest instructions."""

    def __init__(self, uc: Uc, blocks: BlockHook, ticks_per_insn: int = TICKS_PER_INSN) -> None:
        self.frequency = uc.cpr_read(*CNTFRQ_EL0) or 62_500_000
        self.ticks_per_insn = ticks_per_insn
        self._uc = uc
        self._blocks = blocks
        self.skipped_ticks = 0
        self._voff = 0
        self._native: Callable[[int, int], None] | None = None

    def serve_natively(self, update: Callable[[int, int], None] | None) -> None:
        """Guest counter reads are answered by the native MRS hook from the same formula;
        `update` hands it the two values that only change here."""
        self._native = update
        self._sync()

    def _sync(self) -> None:
        if self._native is not None:
            self._native(self.skipped_ticks, self._voff)

    def restart(self) -> None:
        """Make the virtual counter (guest time) read zero now."""
        self._voff = self.physical_count()
        self._sync()

    def physical_count(self) -> int:
        # Exact to the instruction: a counter read in the middle of a translation block
        # does not see the rest of that block (which the block hook counted on entry).
        executed = self._blocks.executed(self._uc.reg_read(UC_ARM64_REG_PC))
        return executed * self.ticks_per_insn + self.skipped_ticks

    def virtual_count(self) -> int:
        return self.physical_count() - self._voff

    def guest_seconds(self) -> float:
        return self.virtual_count() / self.frequency

    def skip(self, ticks: int) -> None:
        """Advance both counts by `ticks` at once (the guest was idle in WFI)."""
        if ticks > 0:
            self.skipped_ticks += ticks
            self._sync()

    def seconds(self, ticks: int) -> float:
        return ticks / self.frequency

    def instructions_for(self, ticks: int) -> int:
        """Instructions the guest must execute for the counter to advance `ticks`."""
        return max(1, -(-ticks // self.ticks_per_insn))

    def load_cpu(self) -> None:
        """Nothing to do: counter reads are trapped and served from the instruction count."""

    def freeze(self) -> None:
        """Nothing to do: the count only moves when instructions run."""

    def thaw(self) -> None:
        """Nothing to do: the count only moves when instructions run."""


def make_counter(uc: Uc, blocks: BlockHook, deterministic: bool) -> PausableCounter | InstructionCounter:
    return InstructionCounter(uc, blocks) if deterministic else PausableCounter(uc)


class DeterministicClock:
    """What the machine asks in deterministic mode: counter reads, stops, idle skips."""

    def __init__(self, counter: InstructionCounter, timers: Callable[[], Iterable[GenericTimer]]) -> None:
        self.counter = counter
        self._timers = timers   # every CPU's (a masked IRQ is taken at unmask by the block hook)

    def read_counter(self, op0: int, op1: int, crn: int, crm: int, op2: int) -> int | None:
        """The value of a trapped counter register read, or None if it is not one."""
        key = (op0, op1, crn, crm, op2)
        if key in (_CNTVCT, _CNTVCTSS):
            return self.counter.virtual_count() & 0xFFFF_FFFF_FFFF_FFFF
        if key in (_CNTPCT, _CNTPCTSS):
            return self.counter.physical_count() & 0xFFFF_FFFF_FFFF_FFFF
        return None

    def rtc_now(self) -> float:
        return RTC_EPOCH + self.counter.guest_seconds()

    def _ticks_until(self, next_event_seconds: float | None) -> list[int]:
        ticks = [t for timer in self._timers() for t in (timer.ticks_until_next(True), timer.ticks_until_next(False))
                 if t is not None]
        if next_event_seconds is not None:
            target = math.ceil(next_event_seconds * self.counter.frequency)
            ticks.append(max(0, target - self.counter.virtual_count()))
        return ticks

    def stop_marks(self, instructions: int, next_event_seconds: float | None) -> list[int]:
        """Instruction counts at which the block hook must stop the CPU."""
        return [instructions + self.counter.instructions_for(t) for t in self._ticks_until(next_event_seconds)]

    def skip_to_next_deadline(self, next_event_seconds: float | None) -> bool:
        """WFI: jump the count to the nearest deadline; False if nothing is armed."""
        ticks = self._ticks_until(next_event_seconds)
        if not ticks:
            return False
        self.counter.skip(min(ticks))
        return True
