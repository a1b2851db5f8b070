"""Guest physical memory as the platform (firmware, devices, RAS) sees it.

Every access is bounds-checked against the mapped RAM/flash regions, because the
addresses often come from the guest (HVC arguments, GAS registers) or the user.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from unicorn import Uc, UcError

from armras.errors import GuestAddressError

PAGE_SIZE = 0x1000               # the granule armras poisons and walks (4 KiB)
PAGE_MASK = ~(PAGE_SIZE - 1)


@dataclass(frozen=True)
class Region:
    name: str
    base: int
    size: int

    @property
    def end(self) -> int:
        return self.base + self.size

    def contains(self, pa: int, size: int = 1) -> bool:
        return self.base <= pa and pa + size <= self.end and size >= 0


class PhysicalMemory:
    """Bounds-checked access to guest physical memory (RAM and flash only, never MMIO)."""

    def __init__(self, uc: Uc, regions: list[Region]) -> None:
        self._uc = uc
        self.regions = list(regions)

    def region_of(self, pa: int, size: int = 1) -> Region:
        for r in self.regions:
            if r.contains(pa, size):
                return r
        raise GuestAddressError(
            f"physical address range {pa:#x}+{size:#x} is outside guest memory "
            f"({', '.join(f'{r.name} {r.base:#x}-{r.end - 1:#x}' for r in self.regions)})"
        )

    def contains(self, pa: int, size: int = 1) -> bool:
        return any(r.contains(pa, size) for r in self.regions)

    def read(self, pa: int, size: int) -> bytes:
        self.region_of(pa, size)
        try:
            return bytes(self._uc.mem_read(pa, size))
        except UcError as e:  # a poisoned (unmapped) page inside RAM
            raise GuestAddressError(f"cannot read guest memory at {pa:#x}+{size:#x}: {e}") from None

    def write(self, pa: int, data: bytes) -> None:
        self.region_of(pa, len(data))
        try:
            self._uc.mem_write(pa, bytes(data))
        except UcError as e:
            raise GuestAddressError(f"cannot write guest memory at {pa:#x}+{len(data):#x}: {e}") from None

    def read_u32(self, pa: int) -> int:
        return struct.unpack("<I", self.read(pa, 4))[0]

    def read_u64(self, pa: int) -> int:
        return struct.unpack("<Q", self.read(pa, 8))[0]

    def write_u32(self, pa: int, value: int) -> None:
        self.write(pa, struct.pack("<I", value & 0xFFFF_FFFF))

    def write_u64(self, pa: int, value: int) -> None:
        self.write(pa, struct.pack("<Q", value & 0xFFFF_FFFF_FFFF_FFFF))
