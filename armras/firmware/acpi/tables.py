"""The board's ACPI tables for arm64 ACPI boot: RSDP, XSDT, FADT, MADT, GTDT, SPCR, DSDT, HEST,
SDEI, PPTT, ERST, EINJ, DBG2.

ACPI 6.4 5.2 (ACPI System Description Tables): tables are laid out in one blob,
16-byte aligned, RSDP first; values follow QEMU's hw/arm/virt-acpi-build.c for
`-M virt,gic-version=2,ras=on` (ACPI 6.0 FADT, GICv2 MADT, GTDT rev 2, SPCR rev 2).
"""
from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

from armras.firmware.acpi import aml
from armras.firmware.acpi.builder import (
    ACCESS_DWORD,
    GAS_SIZE,
    HEADER_SIZE,
    ZERO_GAS,
    TableBuilder,
    checksum,
    gas_memory,
    pad_id,
)
from armras.firmware.acpi.erst import build_erst
from armras.firmware.acpi.einj import build_einj
from armras.firmware.acpi.hest import build_hest
from armras.firmware.acpi.iort import build_iort
from armras.firmware.acpi.msi import GicMsiFrame, gic_msi_frame_entry
from armras.firmware.acpi.pci import PciHostBridge, build_mcfg, pci_host_bridge_devices
from armras.errors import ArmrasError
from armras.board.memmap import (
    PPI_HYP_TIMER,
    PPI_NONSEC_PHYS_TIMER,
    PPI_SEC_PHYS_TIMER,
    PPI_VIRT_TIMER,
    BERT_REGION_SIZE,
    GICV2M_SPI_COUNT,
    SPI_BASE,
    VIRT_IRQMAP,
    VIRT_MEMMAP,
    FirmwareLayout,
    intid,
)
from armras.ras.hw_errors import HardwareErrorsLayout
from armras.ras.sources import BOARD_SOURCES, SourceSpec

log = logging.getLogger(__name__)

TABLE_ALIGN = 16

# --- RSDP (ACPI 6.4 5.2.5.3) ---
RSDP_SIGNATURE = b"RSD PTR "
RSDP_REVISION = 2
RSDP_SIZE = 36
RSDP_V1_CHECKSUM_LEN = 20
RSDP_CHECKSUM_OFFSET = 8
RSDP_EXT_CHECKSUM_OFFSET = 32
RSDP_SIZE_OFFSET = 20
RSDP_XSDT_OFFSET = 24

# --- XSDT (5.2.8) ---
XSDT_REVISION = 1

# --- FADT (ACPI 6.0 5.2.9, 276 bytes) ---
FADT_REVISION = 6
FADT_MINOR_REVISION = 0
FADT_SIZE = 276
FADT_FLAGS_OFFSET = 112
FADT_ARM_BOOT_ARCH_OFFSET = 129
FADT_MINOR_REVISION_OFFSET = 131
FADT_X_DSDT_OFFSET = 140
FADT_HW_REDUCED_ACPI = 1 << 20
ARM_BOOT_PSCI_COMPLIANT = 1 << 0
ARM_BOOT_PSCI_USE_HVC = 1 << 1
HYPERVISOR_VENDOR_ID = b"ARMRAS"

# --- MADT (ACPI 6.0 5.2.12) ---
MADT_REVISION = 4
MADT_TYPE_GICC = 0x0B
MADT_GICC_LENGTH = 80
MADT_TYPE_GICD = 0x0C
MADT_GICD_LENGTH = 24
GICC_FLAG_ENABLED = 1 << 0
GIC_VERSION_2 = 2
PPI_BASE = 16
VIRTUAL_PMU_PPI = 7                       # QEMU VIRTUAL_PMU_IRQ
PMU_INTID = PPI_BASE + VIRTUAL_PMU_PPI    # 23

# --- GTDT (ACPI 5.1+ 5.2.24, revision 2) ---
GTDT_REVISION = 2
GTDT_NO_CNT_BASE = 0xFFFF_FFFF_FFFF_FFFF
GTDT_FLAG_EDGE = 1 << 0                  # 0: level triggered
GTDT_FLAG_ACTIVE_LOW = 1 << 1            # 0: active high
GTDT_FLAG_ALWAYS_ON = 1 << 2

# --- SPCR (Microsoft SPCR spec, revision 2) ---
SPCR_REVISION = 2
SPCR_INTERFACE_PL011 = 3
SPCR_IRQ_TYPE_GIC = 1 << 3
SPCR_BAUD_9600 = 3
SPCR_PARITY_NONE = 0
SPCR_STOP_BITS_1 = 1
SPCR_FLOW_CONTROL_NONE = 0
SPCR_TERMINAL_ANSI = 3
SPCR_NOT_PCI = 0xFFFF

# --- DSDT / GED (QEMU hw/acpi/generic_event_device.c) ---
DSDT_REVISION = 2                        # 64-bit AML integers
GED_EVT_SEL_OFFSET = 0                   # ACPI_GED_EVT_SEL_OFFSET
GED_EVT_SEL_LEN = 4                      # ACPI_GED_EVT_SEL_LEN
GED_ERROR_EVT = 0x20                     # ACPI_GED_ERROR_EVT: Notify(GEDD, 0x80)
ERROR_DEVICE_NOTIFY = 0x80               # Notify value for the PNP0C33 error device

# --- PPTT (ACPI 6.3 5.2.29), laid out as QEMU's build_pptt: one package, one core per CPU ---
PPTT_REVISION = 2
PPTT_TYPE_PROCESSOR = 0
PPTT_PROCESSOR_LENGTH = 20               # with no private resources
PPTT_PHYSICAL_PACKAGE = 1 << 0
PPTT_ACPI_ID_VALID = 1 << 1
PPTT_LEAF = 1 << 3

# --- SDEI (Arm DEN 0054 "SDEI table", header only): tells the OS firmware has an SDEI
# dispatcher (Linux sdei_present_acpi); revision 1, as shipping firmware has it.
SDEI_SIGNATURE = b"SDEI"
SDEI_REVISION = 1

# --- BERT (ACPI 6.4 18.3.1): header, Boot Error Region Length u32, its address u64 ---
BERT_SIGNATURE = b"BERT"
BERT_REVISION = 1

# --- DBG2 (Microsoft "Debug Port Table 2", revision 0), laid out as QEMU's build_dbg2 ---
DBG2_SIGNATURE = b"DBG2"
DBG2_REVISION = 0
DBG2_DEVICE_INFO_OFFSET = HEADER_SIZE + 8        # after OffsetDbgDeviceInfo, NumberDbgDeviceInfo
DBG2_DEVICE_INFO_REVISION = 0
DBG2_DEVICE_INFO_FIXED = 22                      # Debug Device Information up to its arrays
DBG2_PORT_TYPE_SERIAL = 0x8000
DBG2_PORT_SUBTYPE_PL011 = 0x0003
DBG2_UART_NAMESPACE = b"\\_SB.COM0\0"              # the DSDT's PL011, NUL-terminated

XSDT_ORDER = ("FACP", "APIC", "GTDT", "SPCR", "HEST", "BERT", "SDEI", "PPTT", "ERST", "EINJ", "DBG2", "MCFG", "IORT")


@dataclass(frozen=True)
class AcpiPlatform:
    gic_dist_base: int
    gic_cpu_base: int
    uart_base: int
    uart_gsiv: int
    ged_base: int
    ged_gsiv: int
    hw_errors: HardwareErrorsLayout
    mpidrs: tuple[int, ...] = (0,)           # one per CPU: MADT GICC entries, PPTT leaves
    sources: tuple[SourceSpec, ...] = BOARD_SOURCES
    bert_region: tuple[int, int] = (0, 0)     # (address, length) of the Boot Error Region
    erst_base: int = 0                        # the ERST device's register frame (armras.devices.erst)
    einj_base: int = VIRT_MEMMAP["einj"].base  # the EINJ action registers (armras.devices.einj)
    pci: PciHostBridge | None = None          # the PCIe host bridge (MCFG, DSDT PCI0)
    gic_msi_frame: GicMsiFrame | None = None  # the GICv2m frame (MADT GIC MSI Frame)
    oem_id: bytes = b"ARMRAS"
    oem_table_id: bytes = b"ARMRASVT"


@dataclass(frozen=True)
class AcpiTables:
    base: int                 # where blob is loaded in guest physical memory
    blob: bytes               # all tables, each 16-byte aligned, RSDP first
    rsdp_address: int
    tables: dict[str, tuple[int, int]]   # signature -> (address, length)

    def table(self, signature: str) -> bytes:
        """The bytes of one table (e.g. "HEST") from the blob."""
        address, length = self.tables[signature]
        start = address - self.base
        return self.blob[start:start + length]

    @property
    def rsdp(self) -> bytes:
        start = self.rsdp_address - self.base
        return self.blob[start:start + RSDP_SIZE]


def board_platform(ram_base: int, ram_size: int, mpidrs: tuple[int, ...] = (0,),
                   sources: tuple[SourceSpec, ...] = BOARD_SOURCES) -> AcpiPlatform:
    """The AcpiPlatform of the board, every address and interrupt from armras.board.memmap."""
    layout = FirmwareLayout(ram_base, ram_size)
    return AcpiPlatform(
        gic_dist_base=VIRT_MEMMAP["gic_dist"].base,
        gic_cpu_base=VIRT_MEMMAP["gic_cpu"].base,
        uart_base=VIRT_MEMMAP["uart"].base,
        uart_gsiv=intid("uart"),
        ged_base=VIRT_MEMMAP["ged"].base,
        ged_gsiv=intid("ged"),
        hw_errors=HardwareErrorsLayout(layout.hw_errors_base, tuple(s.block_length for s in sources)),
        mpidrs=mpidrs,
        sources=sources,
        bert_region=(layout.bert_region_base, BERT_REGION_SIZE),
        erst_base=VIRT_MEMMAP["erst"].base,
        pci=board_pci_host_bridge(),
        gic_msi_frame=GicMsiFrame(VIRT_MEMMAP["gic_v2m"].base, intid("gic_v2m"), GICV2M_SPI_COUNT),
    )


def board_pci_host_bridge() -> PciHostBridge:
    ecam, mmio, pio = VIRT_MEMMAP["pcie_ecam"], VIRT_MEMMAP["pcie_mmio"], VIRT_MEMMAP["pcie_pio"]
    return PciHostBridge(ecam_base=ecam.base, ecam_size=ecam.size, mmio_base=mmio.base, mmio_size=mmio.size,
                         pio_base=pio.base, pio_size=pio.size, intx_gsi_base=SPI_BASE + VIRT_IRQMAP["pcie"])


# ------------------------------------------------------------------ tables


def _builder(platform: AcpiPlatform, signature: bytes, revision: int) -> TableBuilder:
    return TableBuilder(signature, revision, platform.oem_id, platform.oem_table_id)


def build_bert(platform: AcpiPlatform) -> bytes:
    address, length = platform.bert_region
    tb = _builder(platform, BERT_SIGNATURE, BERT_REVISION)
    tb.u32(length)
    tb.u64(address)
    return tb.finish()


def build_dsdt(platform: AcpiPlatform) -> bytes:
    """DSDT: one processor device per CPU (_UID = the MADT GICC's UID; Linux 6.10+ registers
    its CPU devices from these), the PL011 (COM0), the GED (GHES GPIO notification), GEDD."""
    uart_size = VIRT_MEMMAP["uart"].size
    cpus = [aml.device(f"CPU{index}", [
        aml.name("_HID", aml.string("ACPI0007")),
        aml.name("_UID", aml.integer(index)),
    ]) for index in range(len(platform.mpidrs))]
    com0 = aml.device("COM0", [
        aml.name("_HID", aml.string("ARMH0011")),
        aml.name("_UID", aml.integer(0)),
        aml.name("_CRS", aml.resource_template(
            aml.memory32_fixed(platform.uart_base, uart_size, read_write=True),
            aml.interrupt([platform.uart_gsiv], aml.Usage.CONSUMER, aml.Trigger.LEVEL,
                          aml.Polarity.ACTIVE_HIGH, aml.Sharing.EXCLUSIVE),
        )),
    ])
    evt_sel = aml.local(0)
    ged = aml.device("GED", [
        aml.name("_HID", aml.string("ACPI0013")),
        aml.name("_UID", aml.string("GED")),
        aml.name("_CRS", aml.resource_template(
            aml.interrupt([platform.ged_gsiv], aml.Usage.CONSUMER, aml.Trigger.EDGE,
                          aml.Polarity.ACTIVE_HIGH, aml.Sharing.EXCLUSIVE),
        )),
        aml.operation_region("EREG", aml.RegionSpace.SYSTEM_MEMORY,
                             platform.ged_base + GED_EVT_SEL_OFFSET, GED_EVT_SEL_LEN),
        aml.field("EREG", aml.FieldAccess.DWORD, aml.FieldLock.NO_LOCK,
                  aml.FieldUpdate.WRITE_AS_ZEROS, [("ESEL", GED_EVT_SEL_LEN * 8)]),
        aml.method("_EVT", 1, True, [
            aml.store(aml.name_ref("ESEL"), evt_sel),
            aml.if_(aml.lequal(aml.and_(evt_sel, aml.integer(GED_ERROR_EVT)),
                               aml.integer(GED_ERROR_EVT)), [
                aml.notify(aml.name_ref("GEDD"), aml.integer(ERROR_DEVICE_NOTIFY)),
            ]),
        ]),
    ])
    gedd = aml.device("GEDD", [
        aml.name("_HID", aml.string("PNP0C33")),
        aml.name("_UID", aml.integer(0)),
    ])
    pci = pci_host_bridge_devices(platform.pci) if platform.pci is not None else []
    body = aml.scope("\\_SB", [*cpus, com0, ged, gedd, *pci])
    return _builder(platform, b"DSDT", DSDT_REVISION).raw(body).finish()


def build_fadt(platform: AcpiPlatform, dsdt_address: int) -> bytes:
    """FADT, ACPI 6.0 layout: HW-reduced, PSCI via HVC, X_DSDT only."""
    tb = _builder(platform, b"FACP", FADT_REVISION)
    tb.u32(0)                    # FIRMWARE_CTRL
    tb.u32(0)                    # DSDT (32-bit; X_DSDT is used)
    tb.u8(0)                     # Reserved
    tb.u8(0)                     # Preferred_PM_Profile: unspecified
    tb.u16(0)                    # SCI_INT
    tb.u32(0)                    # SMI_CMD
    tb.u8(0).u8(0).u8(0).u8(0)   # ACPI_ENABLE, ACPI_DISABLE, S4BIOS_REQ, PSTATE_CNT
    for _ in range(8):           # PM1a/b_EVT, PM1a/b_CNT, PM2_CNT, PM_TMR, GPE0, GPE1 blocks
        tb.u32(0)
    for _ in range(8):           # PM1_EVT_LEN .. CST_CNT
        tb.u8(0)
    tb.u16(0).u16(0)             # P_LVL2_LAT, P_LVL3_LAT
    tb.u16(0).u16(0)             # FLUSH_SIZE, FLUSH_STRIDE
    tb.u8(0).u8(0)               # DUTY_OFFSET, DUTY_WIDTH
    tb.u8(0).u8(0).u8(0)         # DAY_ALRM, MON_ALRM, CENTURY
    tb.u16(0)                    # IAPC_BOOT_ARCH
    tb.u8(0)                     # Reserved
    assert tb.offset == FADT_FLAGS_OFFSET
    tb.u32(FADT_HW_REDUCED_ACPI)
    tb.gas(ZERO_GAS)             # RESET_REG
    tb.u8(0)                     # RESET_VALUE
    assert tb.offset == FADT_ARM_BOOT_ARCH_OFFSET
    tb.u16(ARM_BOOT_PSCI_COMPLIANT | ARM_BOOT_PSCI_USE_HVC)
    tb.u8(FADT_MINOR_REVISION)
    tb.u64(0)                    # X_FIRMWARE_CTRL
    assert tb.offset == FADT_X_DSDT_OFFSET
    tb.u64(dsdt_address)
    for _ in range(8):           # X_PM1a_EVT .. X_GPE1_BLK
        tb.gas(ZERO_GAS)
    tb.gas(ZERO_GAS)             # SLEEP_CONTROL_REG
    tb.gas(ZERO_GAS)             # SLEEP_STATUS_REG
    tb.raw(HYPERVISOR_VENDOR_ID.ljust(8, b"\x00"))
    table = tb.finish()
    assert len(table) == FADT_SIZE
    return table


def build_madt(platform: AcpiPlatform) -> bytes:
    """MADT: GICv2 distributor and one GICC per CPU, as QEMU virt with gic-version=2."""
    tb = _builder(platform, b"APIC", MADT_REVISION)
    tb.u32(0)                    # Local Interrupt Controller Address
    tb.u32(0)                    # Flags
    # GIC Distributor (GICD)
    tb.u8(MADT_TYPE_GICD).u8(MADT_GICD_LENGTH).u16(0)
    tb.u32(0)                    # GIC ID
    tb.u64(platform.gic_dist_base)
    tb.u32(0)                    # System Vector Base
    tb.u8(GIC_VERSION_2).reserved(3)
    for index, mpidr in enumerate(platform.mpidrs):
        # GIC CPU Interface (GICC): CPU `index`, the banked CPU interface frame
        start = tb.offset
        tb.u8(MADT_TYPE_GICC).u8(MADT_GICC_LENGTH).u16(0)
        tb.u32(index)                # CPU Interface Number
        tb.u32(index)                # ACPI Processor UID (the PPTT leaf's ACPI Processor ID)
        tb.u32(GICC_FLAG_ENABLED)
        tb.u32(0)                    # Parking Protocol Version
        tb.u32(PMU_INTID)            # Performance Interrupt GSIV
        tb.u64(0)                    # Parked Address
        tb.u64(platform.gic_cpu_base)
        tb.u64(0)                    # GICV
        tb.u64(0)                    # GICH
        tb.u32(0)                    # VGIC Maintenance Interrupt
        tb.u64(0)                    # GICR Base Address
        tb.u64(mpidr)                # MPIDR (affinity fields)
        tb.u8(0)                     # Processor Power Efficiency Class
        tb.reserved(3)
        assert tb.offset - start == MADT_GICC_LENGTH
    if platform.gic_msi_frame is not None:
        tb.raw(gic_msi_frame_entry(platform.gic_msi_frame))
    return tb.finish()


def build_pptt(platform: AcpiPlatform) -> bytes:
    """PPTT: one physical package holding one core (leaf) per CPU, as QEMU's build_pptt."""
    tb = _builder(platform, b"PPTT", PPTT_REVISION)
    package = tb.offset
    tb.u8(PPTT_TYPE_PROCESSOR).u8(PPTT_PROCESSOR_LENGTH).u16(0)
    tb.u32(PPTT_PHYSICAL_PACKAGE)    # Flags
    tb.u32(0)                        # Parent: none
    tb.u32(0)                        # ACPI Processor ID (package 0; not flagged valid)
    tb.u32(0)                        # Number of Private Resources
    for index in range(len(platform.mpidrs)):
        tb.u8(PPTT_TYPE_PROCESSOR).u8(PPTT_PROCESSOR_LENGTH).u16(0)
        tb.u32(PPTT_ACPI_ID_VALID | PPTT_LEAF)
        tb.u32(package)              # Parent: the package node's offset in the table
        tb.u32(index)                # ACPI Processor ID = the MADT GICC's UID
        tb.u32(0)
    return tb.finish()


def build_gtdt(platform: AcpiPlatform) -> bytes:
    """GTDT rev 2: the architected timer PPIs, level/active-high, NS EL1 always-on."""
    irqflags = 0                 # level triggered, active high (QEMU virt)
    tb = _builder(platform, b"GTDT", GTDT_REVISION)
    tb.u64(GTDT_NO_CNT_BASE)     # CntControlBase
    tb.u32(0)                    # Reserved
    tb.u32(PPI_SEC_PHYS_TIMER).u32(irqflags)
    tb.u32(PPI_NONSEC_PHYS_TIMER).u32(irqflags | GTDT_FLAG_ALWAYS_ON)
    tb.u32(PPI_VIRT_TIMER).u32(irqflags)
    tb.u32(PPI_HYP_TIMER).u32(irqflags)
    tb.u64(GTDT_NO_CNT_BASE)     # CntReadBase
    tb.u32(0)                    # Platform Timer Count
    tb.u32(0)                    # Platform Timer Offset
    return tb.finish()


def build_spcr(platform: AcpiPlatform) -> bytes:
    """SPCR rev 2: PL011 at uart_base, GIC interrupt uart_gsiv, 9600 8N1."""
    tb = _builder(platform, b"SPCR", SPCR_REVISION)
    tb.u8(SPCR_INTERFACE_PL011).reserved(3)
    tb.gas(gas_memory(platform.uart_base, bit_width=32, access_size=ACCESS_DWORD))
    tb.u8(SPCR_IRQ_TYPE_GIC)
    tb.u8(0)                     # PC-AT IRQ
    tb.u32(platform.uart_gsiv)
    tb.u8(SPCR_BAUD_9600)
    tb.u8(SPCR_PARITY_NONE)
    tb.u8(SPCR_STOP_BITS_1)
    tb.u8(SPCR_FLOW_CONTROL_NONE)
    tb.u8(SPCR_TERMINAL_ANSI)
    tb.u8(0)                     # Language
    tb.u16(SPCR_NOT_PCI)         # PCI Device ID
    tb.u16(SPCR_NOT_PCI)         # PCI Vendor ID
    tb.u8(0).u8(0).u8(0)         # PCI Bus, Device, Function
    tb.u32(0)                    # PCI Flags
    tb.u8(0)                     # PCI Segment
    tb.u32(0)                    # Reserved
    return tb.finish()


def build_dbg2(platform: AcpiPlatform) -> bytes:
    """DBG2: one debug device, the PL011 (one 32-bit GAS, its size, the DSDT path)."""
    gas_offset = DBG2_DEVICE_INFO_FIXED
    size_offset = gas_offset + GAS_SIZE
    name_offset = size_offset + 4
    tb = _builder(platform, DBG2_SIGNATURE, DBG2_REVISION)
    tb.u32(DBG2_DEVICE_INFO_OFFSET)
    tb.u32(1)                                    # NumberDbgDeviceInfo
    tb.u8(DBG2_DEVICE_INFO_REVISION)
    tb.u16(name_offset + len(DBG2_UART_NAMESPACE))   # Length of this structure
    tb.u8(1)                                     # NumberofGenericAddressRegisters
    tb.u16(len(DBG2_UART_NAMESPACE))             # NamespaceStringLength
    tb.u16(name_offset)                          # NamespaceStringOffset
    tb.u16(0)                                    # OemDataLength
    tb.u16(0)                                    # OemDataOffset: none
    tb.u16(DBG2_PORT_TYPE_SERIAL)
    tb.u16(DBG2_PORT_SUBTYPE_PL011)
    tb.u16(0)                                    # Reserved
    tb.u16(gas_offset)                           # BaseAddressRegisterOffset
    tb.u16(size_offset)                          # AddressSizeOffset
    tb.gas(gas_memory(platform.uart_base, bit_width=32, access_size=ACCESS_DWORD))
    tb.u32(VIRT_MEMMAP["uart"].size)             # AddressSize[]
    tb.raw(DBG2_UART_NAMESPACE)
    return tb.finish()


def build_xsdt(platform: AcpiPlatform, addresses: list[int]) -> bytes:
    tb = _builder(platform, b"XSDT", XSDT_REVISION)
    for address in addresses:
        tb.u64(address)
    return tb.finish()


def xsdt_size(entries: int) -> int:
    return HEADER_SIZE + 8 * entries


def build_rsdp(oem_id: bytes, xsdt_address: int) -> bytes:
    """RSDP revision 2 (36 bytes): checksum over the first 20, extended over all 36."""
    rsdp = bytearray(struct.pack("<8sB6sBIIQB3s", RSDP_SIGNATURE, 0, pad_id(oem_id, 6),
                                 RSDP_REVISION, 0, RSDP_SIZE, xsdt_address, 0, bytes(3)))
    rsdp[RSDP_CHECKSUM_OFFSET] = checksum(rsdp[:RSDP_V1_CHECKSUM_LEN])
    rsdp[RSDP_EXT_CHECKSUM_OFFSET] = checksum(rsdp)
    return bytes(rsdp)


def _align(value: int) -> int:
    return (value + TABLE_ALIGN - 1) & ~(TABLE_ALIGN - 1)


def build_acpi_tables(platform: AcpiPlatform, base: int, max_size: int = 64 * 1024) -> AcpiTables:
    """Lay out every table in one blob at guest physical `base` (RSDP first)."""
    if base % TABLE_ALIGN:
        raise ArmrasError(f"ACPI tables base {base:#x} is not {TABLE_ALIGN}-byte aligned")
    fixed: dict[str, bytes] = {
        "DSDT": build_dsdt(platform),
        "APIC": build_madt(platform),
        "GTDT": build_gtdt(platform),
        "SPCR": build_spcr(platform),
        "HEST": build_hest(platform.sources, platform.hw_errors, platform.oem_id,
                           platform.oem_table_id),
        "BERT": build_bert(platform),
        "SDEI": _builder(platform, SDEI_SIGNATURE, SDEI_REVISION).finish(),
        "PPTT": build_pptt(platform),
        "ERST": build_erst(platform.erst_base, platform.oem_id, platform.oem_table_id),
        "EINJ": build_einj(platform.einj_base, platform.oem_id, platform.oem_table_id),
        "DBG2": build_dbg2(platform),
    }
    order_in_xsdt = XSDT_ORDER
    if platform.pci is not None:
        fixed["MCFG"] = build_mcfg(platform.pci, platform.oem_id, platform.oem_table_id)
        fixed["IORT"] = build_iort(platform.pci.segment, platform.oem_id, platform.oem_table_id)
    else:
        order_in_xsdt = tuple(sig for sig in XSDT_ORDER if sig not in ("MCFG", "IORT"))
    sizes = {"XSDT": xsdt_size(len(order_in_xsdt)), "FACP": FADT_SIZE,
             **{sig: len(data) for sig, data in fixed.items()}}
    order = ("XSDT", "DSDT", *order_in_xsdt)
    addresses: dict[str, int] = {}
    offset = _align(RSDP_SIZE)
    for sig in order:
        addresses[sig] = base + offset
        offset = _align(offset + sizes[sig])
    total = offset
    if total > max_size:
        raise ArmrasError(f"ACPI tables need {total} bytes, only {max_size} reserved")

    built: dict[str, bytes] = dict(fixed)
    built["FACP"] = build_fadt(platform, addresses["DSDT"])
    built["XSDT"] = build_xsdt(platform, [addresses[sig] for sig in order_in_xsdt])

    blob = bytearray(total)
    blob[0:RSDP_SIZE] = build_rsdp(platform.oem_id, addresses["XSDT"])
    for sig in order:
        data = built[sig]
        assert len(data) == sizes[sig], sig
        start = addresses[sig] - base
        blob[start:start + len(data)] = data
    tables = {sig: (addresses[sig], sizes[sig]) for sig in order}
    log.debug("ACPI tables at %#x (%d bytes): %s", base, total,
              ", ".join(f"{s}@{a:#x}" for s, (a, _) in tables.items()))
    return AcpiTables(base=base, blob=bytes(blob), rsdp_address=base, tables=tables)

