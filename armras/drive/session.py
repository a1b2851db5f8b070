"""One `armras run`, shared by the command line and `armras regress`: boot, run, reboot.

A run session builds a board from a MachineConfig, boots the guest on it (a bare-metal
ELF, or Linux through the firmware's UEFI), arranges what the user asked for (first
boot only: injections, poisoned pages, console triggers; every boot: what the caller
needs, e.g. the control socket), and runs it. When the guest asks for a warm reset
(PSCI SYSTEM_RESET/SYSTEM_RESET2, UEFI ResetSystem), the session builds a fresh board
from the same configuration and the platform's persistent state (armras.board.persistent:
the next BERT, optionally the poisoned pages) and boots the same guest again, up to
`max_reboots` times: a reboot loop ends with one clear line.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from armras.board.persistent import PersistentState
from armras.errors import ArmrasError
from armras.ras.erst import ErstStore

if TYPE_CHECKING:
    from armras.board.machine import Machine, MachineConfig, RunResult
    from armras.guests.linux import LinuxBoot

log = logging.getLogger(__name__)

DEFAULT_MAX_REBOOTS = 3
MAX_REBOOTS_LIMIT = 1000


def check_max_reboots(value: int, what: str = "--max-reboots") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REBOOTS_LIMIT:
        raise ArmrasError(f"{what}: {value!r} is not a number of reboots in 0..{MAX_REBOOTS_LIMIT}")
    return value


def parse_max_reboots(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise ArmrasError(f"{text!r} is not a number of reboots") from None
    return check_max_reboots(value, repr(text))


@dataclass(frozen=True)
class Guest:
    """What boots: a bare-metal ELF, a Linux Image (with initrd and command line), or
    whatever `load` puts into a fresh board (tests, tools)."""

    image: Path | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""
    load: Callable[["Machine"], None] | None = None


BootHook = Callable[["Machine"], None]


@dataclass
class RunSession:
    config: MachineConfig
    guest: Guest
    max_reboots: int = DEFAULT_MAX_REBOOTS
    keep_poison: bool = False
    erst: ErstStore | None = None                              # the ERST's store (default: in memory)
    first_boot: list[BootHook] = field(default_factory=list)   # injections, poison, triggers
    every_boot: list[BootHook] = field(default_factory=list)   # e.g. rebinding the control socket
    machine: Machine | None = None                             # the board of the current boot
    linux: LinuxBoot | None = None                             # the current boot's Linux, if any
    boots: int = 0                                             # warm resets so far

    def run(self) -> RunResult:
        from armras.board.machine import Machine

        persistent = PersistentState(keep_poison=self.keep_poison, erst=self.erst if self.erst is not None else ErstStore())
        while True:
            machine = Machine(self.config, persistent)
            self.machine = machine
            try:
                self._boot(machine)
                for hook in (self.first_boot if self.boots == 0 else []) + self.every_boot:
                    hook(machine)
                result = machine.run()
            finally:
                machine.close()
            if not result.reset:
                return result
            if self.boots >= self.max_reboots:
                raise ArmrasError(f"the guest asked for warm reset number {self.boots + 1} ({result.reason}); "
                                  f"--max-reboots {self.max_reboots} ends the run here")
            persistent = persistent.after_reset(machine.poisoned)
            self.boots += 1
            log.warning("warm reset (%s): boot %d%s", result.reason, self.boots + 1,
                        f", {len(persistent.bert_records)} record(s) in the BERT" if persistent.bert_records else "")

    def _boot(self, machine: Machine) -> None:
        if self.guest.load is not None:
            self.guest.load(machine)
        elif self.guest.kernel is not None:
            from armras.guests.linux import boot_linux

            self.linux = boot_linux(machine, self.guest.kernel, self.guest.initrd, self.guest.append)
        else:
            assert self.guest.image is not None
            machine.load_elf(self.guest.image)


__all__ = ["DEFAULT_MAX_REBOOTS", "Guest", "RunSession", "check_max_reboots", "parse_max_reboots"]
