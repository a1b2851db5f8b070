"""ACPI description of the board's PCIe host bridge: the MCFG and the DSDT's PCI0 device.

As QEMU's hw/arm/virt-acpi-build.c (`build_mcfg`, `acpi_dsdt_add_pci`) and
hw/pci-host/gpex-acpi.c (`acpi_dsdt_add_gpex`, the `_OSC` method of
`build_pci_host_bridge_osc_method`): a PNP0A08 host bridge whose _CRS gives the bus
range, the 32-bit memory window and the I/O window, whose _PRT routes INTA..INTD of each
root-bus slot to four level-triggered SPIs (swizzled by slot), and whose _OSC grants the
OS the five PCIe features QEMU grants (native hotplug, SHPC, PME, AER, PCIe capability),
so Linux owns AER (native AER) while firmware may still report PCIe errors through GHES.
"""
from __future__ import annotations

from dataclasses import dataclass

from armras.firmware.acpi import aml
from armras.firmware.acpi.builder import TableBuilder

# MCFG (PCI Firmware Specification 3.0 4.1.2): header, 8 reserved bytes, then per segment
# Base Address u64, PCI Segment Group u16, Start Bus u8, End Bus u8, Reserved u32.
MCFG_SIGNATURE = b"MCFG"
MCFG_REVISION = 1
MCFG_RESERVED = 8
MCFG_ALLOCATION_SIZE = 16

ECAM_BUS_SHIFT = 20                  # 1 MiB of config space per bus (PCIe Base 4.0 7.2.2)
PCI_SLOTS = 32
PCI_INTX_PINS = 4                    # INTA..INTD

# _OSC (PCI Firmware Specification 3.0 4.5.1)
PCI_HOST_BRIDGE_OSC_UUID = "33DB4D5B-1FF7-401C-9657-7441C03DD766"
OSC_QUERY_ERROR_UNRECOGNIZED_REVISION = 0x08   # CDW1 bit 3
OSC_CAPABILITIES_MASKED = 0x10                 # CDW1 bit 4
OSC_UNRECOGNIZED_UUID = 0x04                   # CDW1 bit 2
OSC_REVISION = 1
# Control field bits granted: native hotplug 0, SHPC hotplug 1, PME 2, AER 3, PCIe capability 4.
OSC_CONTROL_GRANTED = 0x1F


@dataclass(frozen=True)
class PciHostBridge:
    ecam_base: int
    ecam_size: int
    mmio_base: int
    mmio_size: int
    pio_base: int
    pio_size: int
    intx_gsi_base: int               # GSIV of INTA on slot 0 (QEMU: 32 + VIRT_PCIE irq)
    segment: int = 0

    @property
    def bus_count(self) -> int:
        return self.ecam_size >> ECAM_BUS_SHIFT


def build_mcfg(bridge: PciHostBridge, oem_id: bytes, oem_table_id: bytes) -> bytes:
    tb = TableBuilder(MCFG_SIGNATURE, MCFG_REVISION, oem_id, oem_table_id)
    tb.reserved(MCFG_RESERVED)
    start = tb.offset
    tb.u64(bridge.ecam_base)
    tb.u16(bridge.segment)
    tb.u8(0)                          # Start Bus Number
    tb.u8(bridge.bus_count - 1)       # End Bus Number
    tb.u32(0)                         # Reserved
    assert tb.offset - start == MCFG_ALLOCATION_SIZE
    return tb.finish()


def intx_gsi(bridge: PciHostBridge, slot: int, pin: int) -> int:
    """The GSIV a root-bus slot's INTx pin (0 = INTA) is routed to, as QEMU's _PRT."""
    return bridge.intx_gsi_base + (slot + pin) % PCI_INTX_PINS


def _prt(bridge: PciHostBridge) -> bytes:
    """_PRT: Package(4) {Address 0xSSSSFFFF, Pin, Source 0 (a GSI), Source Index = GSIV}."""
    entries = [aml.package([aml.integer((slot << 16) | 0xFFFF), aml.integer(pin), aml.integer(0),
                            aml.integer(intx_gsi(bridge, slot, pin))])
               for slot in range(PCI_SLOTS) for pin in range(PCI_INTX_PINS)]
    return aml.name("_PRT", aml.package(entries))


def _osc() -> bytes:
    cdw1, cdw2, cdw3 = aml.name_ref("CDW1"), aml.name_ref("CDW2"), aml.name_ref("CDW3")
    supp, ctrl = aml.name_ref("SUPP"), aml.name_ref("CTRL")
    return aml.method("_OSC", 4, False, [
        aml.create_dword_field(aml.arg(3), aml.integer(0), "CDW1"),
        aml.if_(aml.lequal(aml.arg(0), aml.to_uuid(PCI_HOST_BRIDGE_OSC_UUID)), [
            aml.create_dword_field(aml.arg(3), aml.integer(4), "CDW2"),
            aml.create_dword_field(aml.arg(3), aml.integer(8), "CDW3"),
            aml.store(cdw2, supp),
            aml.store(cdw3, ctrl),
            aml.and_(ctrl, aml.integer(OSC_CONTROL_GRANTED), ctrl),
            aml.if_(aml.lnot(aml.lequal(aml.arg(1), aml.integer(OSC_REVISION))), [
                aml.or_(cdw1, aml.integer(OSC_QUERY_ERROR_UNRECOGNIZED_REVISION), cdw1),
            ]),
            aml.if_(aml.lnot(aml.lequal(cdw3, ctrl)), [
                aml.or_(cdw1, aml.integer(OSC_CAPABILITIES_MASKED), cdw1),
            ]),
            aml.store(ctrl, cdw3),
            aml.return_(aml.arg(3)),
        ]),
        aml.else_([
            aml.or_(cdw1, aml.integer(OSC_UNRECOGNIZED_UUID), cdw1),
            aml.return_(aml.arg(3)),
        ]),
    ])


def pci_host_bridge_devices(bridge: PciHostBridge) -> list[bytes]:
    """The DSDT objects under \\_SB: PCI0 (the host bridge), with RES0 (its ECAM, reserved) inside."""
    pci0 = aml.device("PCI0", [
        aml.name("_HID", aml.string("PNP0A08")),
        aml.name("_CID", aml.string("PNP0A03")),
        aml.name("_SEG", aml.integer(bridge.segment)),
        aml.name("_BBN", aml.integer(0)),
        aml.name("_UID", aml.integer(0)),
        aml.name("_CCA", aml.integer(1)),            # DMA is cache coherent
        _prt(bridge),
        aml.name("_CRS", aml.resource_template(
            aml.word_bus_number(0, bridge.bus_count),
            aml.dword_memory(bridge.mmio_base, bridge.mmio_size),
            aml.dword_io(0, bridge.pio_size, bridge.pio_base),
        )),
        aml.name("SUPP", aml.integer(0)),
        aml.name("CTRL", aml.integer(0)),
        _osc(),
        aml.device("RES0", [
            aml.name("_HID", aml.string("PNP0C02")),
            aml.name("_CRS", aml.resource_template(aml.memory32_fixed(bridge.ecam_base, bridge.ecam_size))),
        ]),
    ])
    return [pci0]
