"""The UEFI memory map and page allocator (UEFI 2.10 7.2, EFI_MEMORY_DESCRIPTOR).

RAM is a list of typed page ranges. Allocations carve Conventional memory top-down,
as EDK2 does; GetMemoryMap serialises the ranges as 48-byte version-1 descriptors.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

PAGE = 0x1000
DESCRIPTOR_SIZE = 48          # EDK2's sizeof(EFI_MEMORY_DESCRIPTOR) rounded to 8: 40 + 8
DESCRIPTOR_VERSION = 1
_DESCRIPTOR = struct.Struct("<IIQQQQ")

EFI_MEMORY_UC = 0x1
EFI_MEMORY_WC = 0x2
EFI_MEMORY_WT = 0x4
EFI_MEMORY_WB = 0x8
EFI_MEMORY_RUNTIME = 1 << 63
CACHEABLE = EFI_MEMORY_UC | EFI_MEMORY_WC | EFI_MEMORY_WT | EFI_MEMORY_WB


class MemoryType(IntEnum):
    RESERVED = 0
    LOADER_CODE = 1
    LOADER_DATA = 2
    BOOT_SERVICES_CODE = 3
    BOOT_SERVICES_DATA = 4
    RUNTIME_SERVICES_CODE = 5
    RUNTIME_SERVICES_DATA = 6
    CONVENTIONAL = 7
    UNUSABLE = 8
    ACPI_RECLAIM = 9
    ACPI_NVS = 10
    MMIO = 11


class AllocationError(Exception):
    """No memory satisfies the request (EFI_OUT_OF_RESOURCES / EFI_NOT_FOUND)."""


@dataclass
class Range:
    start: int
    pages: int
    type: MemoryType
    attribute: int

    @property
    def end(self) -> int:
        return self.start + self.pages * PAGE


class EfiMemoryMap:
    """Typed page ranges covering RAM, with UEFI AllocatePages/FreePages semantics."""

    def __init__(self, ram_base: int, ram_size: int) -> None:
        self.ranges = [Range(ram_base, ram_size // PAGE, MemoryType.CONVENTIONAL, CACHEABLE)]
        self.key = 1

    def set_type(self, start: int, size: int, mtype: MemoryType, attribute: int = CACHEABLE) -> None:
        """Retype [start, start+size) (page aligned), splitting ranges as needed."""
        end = start + size
        out: list[Range] = []
        for r in self.ranges:
            if r.end <= start or r.start >= end:
                out.append(r)
                continue
            if r.start < start:
                out.append(Range(r.start, (start - r.start) // PAGE, r.type, r.attribute))
            lo, hi = max(r.start, start), min(r.end, end)
            out.append(Range(lo, (hi - lo) // PAGE, mtype, attribute))
            if r.end > end:
                out.append(Range(end, (r.end - end) // PAGE, r.type, r.attribute))
        self.ranges = self._merge(out)
        self.key += 1

    @staticmethod
    def _merge(ranges: list[Range]) -> list[Range]:
        ranges.sort(key=lambda r: r.start)
        merged: list[Range] = []
        for r in ranges:
            if r.pages == 0:
                continue
            if merged and merged[-1].end == r.start and merged[-1].type == r.type \
                    and merged[-1].attribute == r.attribute:
                merged[-1].pages += r.pages
            else:
                merged.append(Range(r.start, r.pages, r.type, r.attribute))
        return merged

    def allocate(self, pages: int, mtype: MemoryType, *, max_address: int | None = None,
                 address: int | None = None, align: int = PAGE) -> int:
        """AllocateAnyPages (top-down), AllocateMaxAddress, or AllocateAddress."""
        if pages <= 0:
            raise AllocationError("zero pages requested")
        size = pages * PAGE
        attr = CACHEABLE | (EFI_MEMORY_RUNTIME if mtype in (MemoryType.RUNTIME_SERVICES_CODE,
                                                             MemoryType.RUNTIME_SERVICES_DATA) else 0)
        if address is not None:
            if address % PAGE or not self.is_free(address, size):
                raise AllocationError(f"pages at {address:#x}+{size:#x} are not free")
            self.set_type(address, size, mtype, attr)
            return address
        for r in sorted(self.ranges, key=lambda r: r.start, reverse=True):
            if r.type != MemoryType.CONVENTIONAL:
                continue
            top = r.end if max_address is None else min(r.end, max_address + 1)
            base = (top - size) // align * align
            if base >= r.start:
                self.set_type(base, size, mtype, attr)
                return base
        raise AllocationError(f"no free range of {pages} pages")

    def free(self, address: int, pages: int) -> None:
        size = pages * PAGE
        for r in self.ranges:
            if r.start <= address and address + size <= r.end:
                if r.type in (MemoryType.CONVENTIONAL, MemoryType.RESERVED, MemoryType.ACPI_NVS,
                              MemoryType.ACPI_RECLAIM):
                    break
                self.set_type(address, size, MemoryType.CONVENTIONAL)
                return
        raise AllocationError(f"{address:#x}+{size:#x} was not allocated")

    def is_free(self, address: int, size: int) -> bool:
        return any(r.type == MemoryType.CONVENTIONAL and r.start <= address and address + size <= r.end
                   for r in self.ranges)

    def type_at(self, address: int) -> MemoryType | None:
        for r in self.ranges:
            if r.start <= address < r.end:
                return r.type
        return None

    def descriptors(self) -> bytes:
        out = bytearray()
        for r in self.ranges:
            out += _DESCRIPTOR.pack(r.type, 0, r.start, 0, r.pages, r.attribute).ljust(DESCRIPTOR_SIZE, b"\0")
        return bytes(out)

    @property
    def map_size(self) -> int:
        return len(self.ranges) * DESCRIPTOR_SIZE
