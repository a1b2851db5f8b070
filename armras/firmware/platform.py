"""What platform firmware (UEFI, PSCI) may use of the board: a narrow interface.

The machine satisfies it structurally; firmware never imports the board. Everything
firmware touches is here: guest physical memory and the RAM region, the firmware-owned
range and what lives in it (ACPI tables, the GHES blob), the HVC/SMC service table,
the console, and power-off.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from armras.arch.cpu import Cpu
    from armras.board.memory import PhysicalMemory, Region
    from armras.firmware.acpi import AcpiTables
    from armras.ras.hw_errors import HardwareErrorsLayout


class ConsoleSink(Protocol):
    def write(self, data: bytes) -> None: ...


class FirmwarePlatform(Protocol):
    mem: PhysicalMemory
    ram: Region
    acpi: AcpiTables
    hw_errors: HardwareErrorsLayout
    hvc_handlers: dict[int, Callable[[Cpu], None]]
    console: ConsoleSink

    @property
    def reserved_range(self) -> tuple[int, int]: ...

    @property
    def erst_exchange(self) -> tuple[int, int]: ...

    def power_off(self, status: int, reason: str) -> None: ...

    def system_reset(self, reason: str) -> None: ...


__all__ = ["ConsoleSink", "FirmwarePlatform"]
