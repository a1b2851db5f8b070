"""Boot phases of a Linux guest, read from its console, and the progress line on a terminal.

A Linux boot passes three points the console shows: the EFI stub starts ("EFI stub:
Booting Linux Kernel..."), the kernel proper takes over ("EFI stub: Exiting boot
services...", or the kernel's first line when the stub printed none), and the kernel
starts /init ("Run /init as init process"). Each is an event (`phase`) in the run's
event log (armras.events), and `armras run` shows them on one line of stderr while the
guest boots when stderr is a terminal and the console is not written to that terminal.
"""
from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, TextIO

if TYPE_CHECKING:
    from armras.board.machine import Machine

# (phase, what the user reads, the console line that shows it), in boot order.
PHASES: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("efi_stub", "EFI stub", re.compile(r"EFI stub: Booting Linux Kernel")),
    ("kernel", "kernel", re.compile(r"EFI stub: Exiting boot services|Booting Linux on physical CPU")),
    ("init", "/init", re.compile(r"Run /init as init process")),
)


class ProgressLine:
    """One line on a terminal, rewritten in place (nothing at all on anything else)."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self._stream = stream
        self.enabled = enabled
        self._shown = False

    @classmethod
    def for_stderr(cls, stream: TextIO, console_on_terminal: bool) -> ProgressLine:
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        return cls(stream, tty and not console_on_terminal)

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        self._stream.write("\r" + text[:width] + "\x1b[K")
        self._stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self.enabled and self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False


@dataclass
class BootPhases:
    """Follows the phases of each boot of a run session (attach() on every boot)."""

    progress: ProgressLine | None = None
    reached: list[tuple[str, float]] = field(default_factory=list)   # (phase, wall seconds) this boot
    boot: int = 0
    on_phase: Callable[[str], None] | None = None
    _started: float = 0.0

    def attach(self, machine: Machine) -> None:
        self.boot += 1
        self.reached = []
        self._started = time.monotonic()
        machine.console.watch(lambda line: self._line(machine, line))

    def _line(self, machine: Machine, line: str) -> None:
        if len(self.reached) >= len(PHASES):
            return
        done = {name for name, _ in self.reached}
        for name, label, pattern in PHASES:
            if name in done or not pattern.search(line):
                continue
            self.reached.append((name, time.monotonic() - self._started))
            machine.events.emit("phase", phase=name)
            if self.on_phase is not None:
                self.on_phase(name)
            if self.progress is not None:
                labels = dict((n, lbl) for n, lbl, _ in PHASES)
                trail = " > ".join(f"{labels[n]} {t:.1f} s" for n, t in self.reached)
                self.progress.show(f"armras: boot {self.boot}: {trail} (guest time "
                                   f"{machine.counter.guest_seconds():.1f} s)")
            return


__all__ = ["PHASES", "BootPhases", "ProgressLine"]
