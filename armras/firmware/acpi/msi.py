"""The MADT's GIC MSI Frame structure (ACPI 6.0 5.2.12.16, MADT type 0x0D) for a GICv2m frame.

As QEMU's hw/arm/virt-acpi-build.c `build_madt` with gic-version=2: frame ID 0, the frame's
physical base, Flags bit 0 (SPI Count/Base Select) set so the OS takes the SPI range from
this structure (Linux: gicv2m_acpi_parse prints "ACPI overriding V2M MSI_TYPER").
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

MADT_TYPE_GIC_MSI_FRAME = 0x0D
MADT_GIC_MSI_FRAME_LENGTH = 24
GIC_MSI_FRAME_FLAG_SPI_SELECT = 1 << 0
# Type u8, Length u8, Reserved u16, GIC MSI Frame ID u32, Physical Base Address u64,
# Flags u32, SPI Count u16, SPI Base u16.
GIC_MSI_FRAME_FORMAT = "<BBHIQIHH"


@dataclass(frozen=True)
class GicMsiFrame:
    base: int
    spi_base: int                    # INTID of the first SPI
    spi_count: int
    frame_id: int = 0


def gic_msi_frame_entry(frame: GicMsiFrame) -> bytes:
    entry = struct.pack(GIC_MSI_FRAME_FORMAT, MADT_TYPE_GIC_MSI_FRAME, MADT_GIC_MSI_FRAME_LENGTH, 0,
                        frame.frame_id, frame.base, GIC_MSI_FRAME_FLAG_SPI_SELECT, frame.spi_count, frame.spi_base)
    assert len(entry) == MADT_GIC_MSI_FRAME_LENGTH
    return entry
