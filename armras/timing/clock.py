"""Time: the guest's system counter, and the one host thread that stops the CPU on time.

The counters are Unicorn's (host monotonic time at CNTFRQ). Idle time is skipped by
moving CNTVOFF_EL2, so the guest's virtual counter (what Linux and the bare-metal
guests use) jumps to the next deadline instead of the host sleeping.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from unicorn import Uc

from armras.arch.regs import Regs

CNTFRQ_EL0 = (3, 3, 14, 0, 0)
CNTPCT_EL0 = (3, 3, 14, 0, 1)
CNTVCT_EL0 = (3, 3, 14, 0, 2)
CNTVOFF_EL2 = (3, 4, 14, 0, 3)


class SystemCounter:
    """The guest's view of the system counter, with idle-skip for the virtual count."""

    def __init__(self, uc: Uc) -> None:
        self._uc = uc
        self._regs = Regs(uc)
        self.frequency = self._regs.sysreg(CNTFRQ_EL0) or 62_500_000
        self._cntvoff = 0
        self.skipped_ticks = 0
        self.restart()

    def restart(self) -> None:
        """Make the virtual counter (guest time) read zero now."""
        self._set_offset(self._regs.sysreg(CNTPCT_EL0))

    def _set_offset(self, value: int) -> None:
        self._cntvoff = value & 0xFFFF_FFFF_FFFF_FFFF
        self._regs.set_sysreg(CNTVOFF_EL2, self._cntvoff)

    def load_cpu(self) -> None:
        """A CPU was switched in: give it the board's CNTVOFF (each CPU's context has its own)."""
        self._regs.set_sysreg(CNTVOFF_EL2, self._cntvoff)

    def physical_count(self) -> int:
        return self._regs.sysreg(CNTPCT_EL0)

    def virtual_count(self) -> int:
        return self._regs.sysreg(CNTVCT_EL0)

    def guest_seconds(self) -> float:
        return self.virtual_count() / self.frequency

    def skip(self, ticks: int) -> None:
        """Advance the virtual counter by `ticks` at once (the guest was idle)."""
        if ticks > 0:
            self.skipped_ticks += ticks
            self._set_offset(self._cntvoff - ticks)

    def seconds(self, ticks: int) -> float:
        return ticks / self.frequency


class Alarm:
    """A single long-lived thread that calls `fire` when the armed deadline passes.

    Re-arming is a condition-variable notify, so the run loop can move the deadline
    every slice without creating threads (emu_start's own timeout starts one per call).
    """

    def __init__(self, fire: Callable[[], None]) -> None:
        self._fire = fire
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="armras-alarm", daemon=True)
        self._thread.start()

    def arm(self, deadline: float | None) -> None:
        """Fire at `deadline` (time.monotonic()), or never (None). An unchanged deadline
        does not wake the thread: under --deterministic the loop re-arms at every timer
        write, and each wake-up made the CPU thread wait for the GIL."""
        with self._cond:
            if deadline == self._deadline:
                return
            self._deadline = deadline
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=1)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                if self._deadline is None:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                if now < self._deadline:
                    self._cond.wait(self._deadline - now)
                    continue
                self._deadline = None
            # Outside the condition lock: `fire` may wait for the CPU to leave a
            # callback, and callbacks re-arm the alarm.
            self._fire()
