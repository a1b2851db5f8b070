"""A GICv2m MSI frame: PCIe MSI writes to MSI_SETSPI_NS raise SPIs of a GICv2.

Arm Server Base System Architecture (SBSA) 3.0/5.0, Appendix E "GIC-400 MSI extension
(GICv2m)": a 4 KiB frame with MSI_TYPER (0x008: bits 25:16 the first SPI's INTID, bits 9:0
the number of SPIs), MSI_SETSPI_NS (0x040: writing an INTID in bits 9:0 raises that SPI, edge)
and MSI_IIDR (0xFCC). Modelled on QEMU's hw/intc/arm_gicv2m.c, which QEMU virt maps at
0x0802_0000 with SPIs 48..111 (INTIDs 80..143): the same values here, so MSI_IIDR is
QEMU's (product id 'Q' in bits 31:20) and the identification registers 0xFD0-0xFFC read 0.
Guest accesses the frame does not define (other offsets, sizes QEMU rejects, an INTID outside
the frame) are ignored with one log line, as QEMU's LOG_GUEST_ERROR (rate-limited: a guest
repeating a mistake gets a few lines and a count).
"""
from __future__ import annotations

import logging

from armras.devices import IrqSink
from armras.ratelimit import RateLimiter

log = logging.getLogger(__name__)

FRAME_SIZE = 0x1000
MSI_TYPER = 0x008
MSI_SETSPI_NS = 0x040
MSI_IIDR = 0xFCC
IIDR0 = 0xFD0                          # identification registers 0xFD0..0xFFC (not implemented: 0)
IIDR11 = 0xFFC
TYPER_BASE_SHIFT = 16
TYPER_BASE_MASK = 0x3FF
TYPER_NUMBER_MASK = 0x3FF
SETSPI_INTID_MASK = 0x3FF
PRODUCT_ID_QEMU = 0x51                 # ASCII 'Q'
IIDR_PRODUCT_ID_SHIFT = 20
READ_SIZES = (4,)                      # QEMU gicv2m_read: 32-bit only
WRITE_SIZES = (2, 4)                   # QEMU gicv2m_write: 16- or 32-bit


class GicV2m:
    """One MSI frame: SPIs [first_intid, first_intid + count) of `irq` (edge-triggered pulses)."""

    def __init__(self, irq: IrqSink, base: int, first_intid: int, count: int, name: str = "gic_v2m") -> None:
        if not 0 < count <= TYPER_NUMBER_MASK or not 32 <= first_intid <= TYPER_BASE_MASK:
            raise ValueError(f"GICv2m SPI range {first_intid}+{count} does not fit MSI_TYPER")
        self.name = name
        self.base = base
        self.first_intid = first_intid
        self.count = count
        self._irq = irq
        self._warnings = RateLimiter(log)
        self.raised = 0                     # SPIs raised through MSI_SETSPI_NS

    @property
    def typer(self) -> int:
        return (self.first_intid << TYPER_BASE_SHIFT) | self.count

    def read(self, offset: int, size: int) -> int:
        if size not in READ_SIZES:
            self._warnings.warning("read-size", "%s: %d-byte read at %#x ignored (32-bit registers)",
                                   self.name, size, offset)
            return 0
        if offset == MSI_TYPER:
            return self.typer
        if offset == MSI_IIDR:
            return PRODUCT_ID_QEMU << IIDR_PRODUCT_ID_SHIFT
        if IIDR0 <= offset <= IIDR11:
            return 0
        self._warnings.warning("read-offset", "%s: read of undefined offset %#x ignored", self.name, offset)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if size not in WRITE_SIZES:
            self._warnings.warning("write-size", "%s: %d-byte write at %#x ignored (16- or 32-bit writes)",
                                   self.name, size, offset)
            return
        if offset != MSI_SETSPI_NS:
            self._warnings.warning("write-offset", "%s: write of %#x to offset %#x ignored "
                                   "(only MSI_SETSPI_NS is writable)", self.name, value, offset)
            return
        intid = value & SETSPI_INTID_MASK
        if not self.first_intid <= intid < self.first_intid + self.count:
            self._warnings.warning("setspi", "%s: MSI_SETSPI_NS write of INTID %d ignored (the frame has %d..%d)",
                                   self.name, intid, self.first_intid, self.first_intid + self.count - 1)
            return
        self.raised += 1
        self._irq.pulse(intid)

    def msi_write(self, address: int, data: int) -> None:
        """A PCIe function's MSI: a 32-bit memory write of `data` to `address`."""
        if address != self.base + MSI_SETSPI_NS:
            self._warnings.warning("doorbell", "%s: MSI write of %#x to %#x dropped: not the frame's "
                                   "MSI_SETSPI_NS (%#x)", self.name, data, address, self.base + MSI_SETSPI_NS)
            return
        self.write(MSI_SETSPI_NS, 4, data)
