"""The board's physical memory map and interrupt wiring, in one table.

Modelled on QEMU's hw/arm/virt.c `base_memmap` / `a15irqmap`: the same addresses, so
guests (and the ACPI tables they read) see what they would see under `-M virt`.
"""
from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class MapEntry:
    base: int
    size: int


VIRT_MEMMAP: dict[str, MapEntry] = {
    "flash":    MapEntry(0x0000_0000, 128 * MiB),
    "gic_dist": MapEntry(0x0800_0000, 0x1_0000),
    "gic_cpu":  MapEntry(0x0801_0000, 0x1_0000),
    "gic_v2m":  MapEntry(0x0802_0000, 0x1000),     # GICv2m MSI frame (armras.devices.gicv2m)
    "uart":     MapEntry(0x0900_0000, 0x1000),
    "rtc":      MapEntry(0x0901_0000, 0x1000),
    "ged":      MapEntry(0x0908_0000, 0x1000),   # ACPI Generic Event Device (GHES GPIO notify)
    "erst":     MapEntry(0x0910_0000, 0x1000),   # ERST action/value registers (armras.devices.erst)
    "einj":     MapEntry(0x0912_0000, 0x1000),   # EINJ action registers (armras.devices.einj)
    "pcie_mmio": MapEntry(0x1000_0000, 0x2eff_0000),  # PCIe host bridge 32-bit memory window
    "pcie_pio": MapEntry(0x3eff_0000, 0x1_0000),      # PCIe I/O window (port I/O 0-0xffff)
    "pcie_ecam": MapEntry(0x3f00_0000, 0x100_0000),   # PCIe ECAM config space, buses 0-15
    "ram":      MapEntry(0x4000_0000, 0),        # size comes from the machine config
}

# Shared peripheral interrupts (SPI numbers; GSIV/INTID = 32 + SPI), as a15irqmap.
VIRT_IRQMAP: dict[str, int] = {
    "uart": 1,
    "rtc": 2,
    "ged": 9,
    "pcie": 3,         # INTA..INTD of the root bus: SPIs 3..6 (swizzled by slot in the _PRT)
    "gic_v2m": 48,     # the GICv2m frame's first SPI (QEMU: NUM_GICV2M_SPIS = 64 from here)
}
GICV2M_SPI_COUNT = 64
PCIE_INTX_LINES = 4

SPI_BASE = 32

# Architected timer PPIs (INTIDs), as QEMU virt / the GTDT.
PPI_SEC_PHYS_TIMER = 29
PPI_NONSEC_PHYS_TIMER = 30
PPI_VIRT_TIMER = 27
PPI_HYP_TIMER = 26

DEFAULT_RAM_SIZE = 512 * MiB

# Platform firmware keeps the top of RAM for itself: ACPI tables, then the GHES
# hardware-errors blob (error status address registers, read-ack registers, blocks).
FW_RESERVED_SIZE = 2 * MiB
ACPI_TABLES_OFFSET = 0            # from the start of the reserved region
ACPI_TABLES_SIZE = 64 * KiB
HW_ERRORS_OFFSET = 1 * MiB        # from the start of the reserved region
HW_ERRORS_SIZE = 64 * KiB
BERT_REGION_OFFSET = HW_ERRORS_OFFSET + HW_ERRORS_SIZE   # the Boot Error Region (ACPI 6.4 18.3.1)
BERT_REGION_SIZE = 64 * KiB
ERST_EXCHANGE_OFFSET = BERT_REGION_OFFSET + BERT_REGION_SIZE   # the ERST exchange buffer (ACPI 6.4 18.5)
ERST_EXCHANGE_SIZE = 64 * KiB


def intid(name: str) -> int:
    """GIC interrupt ID of a shared peripheral from VIRT_IRQMAP."""
    return SPI_BASE + VIRT_IRQMAP[name]


@dataclass(frozen=True)
class FirmwareLayout:
    """Where firmware puts its tables in RAM for a given RAM size."""

    ram_base: int
    ram_size: int

    @property
    def reserved_base(self) -> int:
        return self.ram_base + self.ram_size - FW_RESERVED_SIZE

    @property
    def acpi_base(self) -> int:
        return self.reserved_base + ACPI_TABLES_OFFSET

    @property
    def hw_errors_base(self) -> int:
        return self.reserved_base + HW_ERRORS_OFFSET

    @property
    def bert_region_base(self) -> int:
        return self.reserved_base + BERT_REGION_OFFSET

    @property
    def erst_exchange_base(self) -> int:
        return self.reserved_base + ERST_EXCHANGE_OFFSET
