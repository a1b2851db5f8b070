"""Board devices: one module each, mapped by the machine from its memory map table."""
from __future__ import annotations

from typing import Protocol


class MmioDevice(Protocol):
    """A memory-mapped device: offsets are relative to its base in the memory map."""

    name: str

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


class IrqSink(Protocol):
    """Where devices drive their interrupt lines (the GIC distributor)."""

    def set_level(self, intid: int, level: bool) -> None: ...

    def pulse(self, intid: int) -> None: ...
