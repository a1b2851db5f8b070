"""UEFI Common Platform Error Records as the guest reads them from a GHES error status block.

Builds and parses the ACPI 6.x Generic Error Status Block (18.3.2.7) and Generic Error
Data Entry (18.3.2.7.1, revision 0x0300) around UEFI 2.x Appendix N sections: the
Memory Error Section (N.2.5), the ARM Processor Error Section (N.2.4.4) and the PCI
Express Error Section (UEFI 2.9 N.2.7).  The bytes
match what QEMU writes (hw/acpi/ghes.c, scripts/arm_processor_error.py) and the parser
applies the checks Linux makes before trusting a record (drivers/acpi/apei/ghes.c
__ghes_check_estatus, drivers/firmware/efi/cper.c cper_estatus_check).

ARM error-info ``type`` uses the UEFI 2.9A errata bitmask (cache bit 1, TLB bit 2,
bus bit 3, micro-architectural bit 4), as QEMU does; kernels before that errata was
adopted read the byte as an enum (0 cache, 1 TLB, 2 bus, 3 micro-arch), so pass an int
to get the encoding a given guest expects.
"""
from __future__ import annotations

import enum
import functools
import struct
import uuid
from dataclasses import dataclass, field
from typing import Sequence, Union

from armras.errors import ArmrasError
from armras.ras.sources import ERROR_BLOCK_SIZE


def guid_bytes(text: str) -> bytes:
    """A GUID in the mixed-endian byte order UEFI and ACPI store it in."""
    return uuid.UUID(text).bytes_le


MEMORY_ERROR_GUID = uuid.UUID("A5BC1114-6F64-4EDE-B863-3E83ED7C83B1")
ARM_PROCESSOR_ERROR_GUID = uuid.UUID("E19E3D16-BC11-11E4-9CAA-C2051D5D46B0")
PCIE_ERROR_GUID = uuid.UUID("D995E954-BBC1-430F-AD91-B44DCB3C6F35")

SECTION_NAMES: tuple[tuple[uuid.UUID, str], ...] = (
    (MEMORY_ERROR_GUID, "memory error"),
    (ARM_PROCESSOR_ERROR_GUID, "ARM processor error"),
    (PCIE_ERROR_GUID, "PCIe error"),
)


class Severity(enum.IntEnum):
    RECOVERABLE = 0
    FATAL = 1
    CORRECTED = 2
    NONE = 3

    @property
    def label(self) -> str:
        return self.name.lower() if self is not Severity.NONE else "info"


def severity_label(value: int) -> str:
    try:
        return Severity(value).label
    except ValueError:
        return "unknown"


# Generic Error Status Block
ESTATUS_FORMAT = "<IIIII"     # Block Status, Raw Data Offset, Raw Data Length, Data Length, Error Severity
ESTATUS_SIZE = struct.calcsize(ESTATUS_FORMAT)
ESTATUS_SEVERITY_OFFSET = 16
BLOCK_STATUS_UNCORRECTABLE = 1 << 0
BLOCK_STATUS_CORRECTABLE = 1 << 1
BLOCK_STATUS_MULTIPLE_UNCORRECTABLE = 1 << 2
BLOCK_STATUS_MULTIPLE_CORRECTABLE = 1 << 3
BLOCK_STATUS_ENTRY_COUNT_SHIFT = 4
BLOCK_STATUS_ENTRY_COUNT_MASK = 0x3FF << BLOCK_STATUS_ENTRY_COUNT_SHIFT

# Generic Error Data Entry
GDATA_REVISION = 0x0300
GDATA_FORMAT_V2 = "<16sIHBBI16s20s"
GDATA_SIZE_V2 = struct.calcsize(GDATA_FORMAT_V2)
GDATA_FORMAT_V3 = GDATA_FORMAT_V2 + "Q"
GDATA_SIZE_V3 = struct.calcsize(GDATA_FORMAT_V3)
GDATA_REVISION_OFFSET = 20
GDATA_LENGTH_OFFSET = 24
FRU_TEXT_SIZE = 20

# Memory Error Section
MEM_SECTION_FORMAT = "<QQQQHHHHHHHHQQQBBHHH"
MEM_SECTION_SIZE = struct.calcsize(MEM_SECTION_FORMAT)
MEM_VALID_ERROR_STATUS = 1 << 0
MEM_VALID_PA = 1 << 1
MEM_VALID_PA_MASK = 1 << 2
MEM_VALID_ERROR_TYPE = 1 << 14
MEM_VALID_MODULE_HANDLE = 1 << 17   # Module Handle: the SMBIOS type 17 (Memory Device) structure
MEM_PA_OFFSET = 16

MEMORY_ERROR_TYPES: tuple[str, ...] = (
    "unknown", "no error", "single-bit ECC", "multi-bit ECC",
    "single-symbol chipkill ECC", "multi-symbol chipkill ECC", "master abort",
    "target abort", "parity error", "watchdog timeout", "invalid address",
    "mirror Broken", "memory sparing", "scrub corrected error",
    "scrub uncorrected error", "physical memory map-out event",
)

# ARM Processor Error Section
ARM_SECTION_FORMAT = "<IHHIB3sQQII"
ARM_SECTION_HEADER_SIZE = struct.calcsize(ARM_SECTION_FORMAT)
ARM_VALID_MPIDR = 1 << 0
ARM_VALID_AFFINITY_LEVEL = 1 << 1
ARM_VALID_RUNNING_STATE = 1 << 2
ARM_VALID_VENDOR_INFO = 1 << 3

ARM_ERR_INFO_FORMAT = "<BBHBHBQQQ"
ARM_ERR_INFO_SIZE = struct.calcsize(ARM_ERR_INFO_FORMAT)
ARM_INFO_VALID_MULTI_ERR = 1 << 0
ARM_INFO_VALID_FLAGS = 1 << 1
ARM_INFO_VALID_ERR_INFO = 1 << 2
ARM_INFO_VALID_VIRT_ADDR = 1 << 3
ARM_INFO_VALID_PHYSICAL_ADDR = 1 << 4

ARM_INFO_FLAGS_FIRST = 1 << 0
ARM_INFO_FLAGS_LAST = 1 << 1
ARM_INFO_FLAGS_PROPAGATED = 1 << 2
ARM_INFO_FLAGS_OVERFLOW = 1 << 3

ARM_ERROR_TYPES: tuple[tuple[str, int], ...] = (
    ("cache", 1 << 1),
    ("tlb", 1 << 2),
    ("bus", 1 << 3),
    ("micro-arch", 1 << 4),
)

ARM_CTX_INFO_FORMAT = "<HHI"
ARM_CTX_INFO_SIZE = struct.calcsize(ARM_CTX_INFO_FORMAT)
ARM_CTX_AARCH64_GPR = 4
ARM_CTX_AARCH64_EL1 = 5


def arm_error_type(value: str | int) -> int:
    """The error-info type byte for a name ('cache', 'tlb', 'bus', 'micro-arch', or
    several joined with ',') or a raw integer."""
    if isinstance(value, int):
        if not 0 <= value <= 0xFF:
            raise ArmrasError(f"ARM error type {value:#x} does not fit in a byte")
        return value
    bits = 0
    names = dict(ARM_ERROR_TYPES)
    for part in value.split(","):
        name = part.strip().lower().removesuffix("-error")
        if name not in names:
            raise ArmrasError(
                f"unknown ARM error type {part!r} (expected one of {', '.join(names)})"
            )
        bits |= names[name]
    return bits


@dataclass(frozen=True)
class ArmErrorInfo:
    """One ARM Processor Error Information structure (UEFI N.2.4.4.1)."""

    type: str | int = "cache"
    multiple_error: int = 0
    flags: int = ARM_INFO_FLAGS_FIRST | ARM_INFO_FLAGS_LAST
    error_info: int = 0x0091000F
    virt_addr: int | None = None
    phys_addr: int | None = None

    def to_bytes(self) -> bytes:
        valid = ARM_INFO_VALID_MULTI_ERR | ARM_INFO_VALID_FLAGS | ARM_INFO_VALID_ERR_INFO
        if self.virt_addr is not None:
            valid |= ARM_INFO_VALID_VIRT_ADDR
        if self.phys_addr is not None:
            valid |= ARM_INFO_VALID_PHYSICAL_ADDR
        return struct.pack(
            ARM_ERR_INFO_FORMAT, 0, ARM_ERR_INFO_SIZE, valid, arm_error_type(self.type),
            self.multiple_error & 0xFFFF, self.flags & 0xFF, _u64(self.error_info),
            _u64(self.virt_addr or 0), _u64(self.phys_addr or 0),
        )


@dataclass(frozen=True)
class ArmContextInfo:
    """One ARM Processor Context Information structure (UEFI N.2.4.4.2)."""

    type: int = ARM_CTX_AARCH64_EL1
    registers: bytes = b""

    def to_bytes(self) -> bytes:
        return struct.pack(ARM_CTX_INFO_FORMAT, 0, self.type, len(self.registers)) + self.registers


def _u64(value: int) -> int:
    return value & 0xFFFF_FFFF_FFFF_FFFF


def memory_error_section(
    physical_address: int,
    error_type: int = 0,
    *,
    physical_address_mask: int | None = None,
    error_status: int | None = None,
    module_handle: int | None = None,
) -> bytes:
    """An 80-byte Memory Error Section; with defaults exactly the one QEMU writes.

    `module_handle` names the DIMM: the SMBIOS handle of its type 17 structure (Linux
    prints "DIMM location: <bank locator> <device locator>" from it, dmi_memdev_name).
    """
    valid = MEM_VALID_ERROR_TYPE | MEM_VALID_PA
    if physical_address_mask is not None:
        valid |= MEM_VALID_PA_MASK
    if error_status is not None:
        valid |= MEM_VALID_ERROR_STATUS
    if module_handle is not None:
        if not 0 <= module_handle <= 0xFFFF:
            raise ArmrasError(f"memory error section: module handle {module_handle:#x} is not a 16-bit SMBIOS handle")
        valid |= MEM_VALID_MODULE_HANDLE
    return struct.pack(
        MEM_SECTION_FORMAT, valid, _u64(error_status or 0), _u64(physical_address),
        _u64(physical_address_mask or 0), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        error_type & 0xFF, 0, 0, 0, module_handle or 0,
    )


def arm_processor_section(
    mpidr: int,
    midr: int = 0,
    errors: Sequence[ArmErrorInfo] = (ArmErrorInfo(),),
    running_state: int = 1,
    *,
    affinity_level: int | None = 0,
    psci_state: int = 0,
    contexts: Sequence[ArmContextInfo] = (),
    vendor_data: bytes = b"",
) -> bytes:
    """An ARM Processor Error Section: 40-byte header, error-info, context, vendor bytes."""
    if not errors:
        raise ArmrasError("an ARM processor error section needs at least one error-info record")
    valid = ARM_VALID_MPIDR | ARM_VALID_RUNNING_STATE
    if affinity_level is not None:
        valid |= ARM_VALID_AFFINITY_LEVEL
    if vendor_data:
        valid |= ARM_VALID_VENDOR_INFO
    body = b"".join(e.to_bytes() for e in errors)
    body += b"".join(c.to_bytes() for c in contexts)
    body += bytes(vendor_data)
    header = struct.pack(
        ARM_SECTION_FORMAT, valid, len(errors), len(contexts),
        ARM_SECTION_HEADER_SIZE + len(body), (affinity_level or 0) & 0xFF, bytes(3),
        _u64(mpidr), _u64(midr), running_state & 0xFFFF_FFFF, psci_state & 0xFFFF_FFFF,
    )
    return header + body


# PCI Express Error Section (UEFI 2.9 N.2.7), 208 bytes, as Linux's struct cper_sec_pcie.
PCIE_VALID_PORT_TYPE = 1 << 0
PCIE_VALID_VERSION = 1 << 1
PCIE_VALID_COMMAND_STATUS = 1 << 2
PCIE_VALID_DEVICE_ID = 1 << 3
PCIE_VALID_SERIAL_NUMBER = 1 << 4
PCIE_VALID_BRIDGE_CONTROL = 1 << 5
PCIE_VALID_CAPABILITY = 1 << 6
PCIE_VALID_AER_INFO = 1 << 7
PCIE_SPEC_VERSION = (0, 4)           # Version: the PCIe spec the device supports, (minor, major) = Base 4.0
PCIE_HEAD_FORMAT = "<QIBBHHHI"       # validation, port type, version minor/major/reserved, command, status, reserved
PCIE_DEVICE_ID_FORMAT = "<HH3sBBHBBHB"   # vendor, device, class code, function, device, segment, bus,
                                         # secondary bus, slot, reserved
PCIE_TAIL_FORMAT = "<IIHH"           # serial lower/upper, bridge secondary status, bridge control
PCIE_CAPABILITY_SIZE = 60            # the PCI Express Capability Structure
PCIE_AER_INFO_SIZE = 96              # the AER Extended Capability Structure
PCIE_SECTION_SIZE = (struct.calcsize(PCIE_HEAD_FORMAT) + struct.calcsize(PCIE_DEVICE_ID_FORMAT)
                     + struct.calcsize(PCIE_TAIL_FORMAT) + PCIE_CAPABILITY_SIZE + PCIE_AER_INFO_SIZE)


@dataclass(frozen=True)
class PcieErrorInfo:
    """What a PCI Express Error Section says about one function (config-space values)."""

    port_type: int                   # PCIe Capabilities register's Device/Port Type
    command: int
    status: int
    vendor_id: int
    device_id: int
    class_code: int                  # 24-bit base/sub/prog-if
    segment: int
    bus: int
    device: int
    function: int
    secondary_bus: int = 0
    capability: bytes = b""          # up to 60 bytes of the PCI Express Capability
    aer: bytes = b""                 # up to 96 bytes of the AER capability (Linux reads 56)
    bridge_secondary_status: int | None = None
    bridge_control: int | None = None
    serial_number: int | None = None


def pcie_error_section(info: PcieErrorInfo) -> bytes:
    """A 208-byte PCI Express Error Section (UEFI 2.9 N.2.7)."""
    if len(info.capability) > PCIE_CAPABILITY_SIZE or len(info.aer) > PCIE_AER_INFO_SIZE:
        raise ArmrasError(f"PCIe section: capability is at most {PCIE_CAPABILITY_SIZE} bytes and AER info "
                          f"at most {PCIE_AER_INFO_SIZE}")
    valid = (PCIE_VALID_PORT_TYPE | PCIE_VALID_VERSION | PCIE_VALID_COMMAND_STATUS | PCIE_VALID_DEVICE_ID
             | (PCIE_VALID_CAPABILITY if info.capability else 0) | (PCIE_VALID_AER_INFO if info.aer else 0))
    if info.serial_number is not None:
        valid |= PCIE_VALID_SERIAL_NUMBER
    if info.bridge_control is not None:
        valid |= PCIE_VALID_BRIDGE_CONTROL
    minor, major = PCIE_SPEC_VERSION
    head = struct.pack(PCIE_HEAD_FORMAT, valid, info.port_type, minor, major, 0,
                       info.command & 0xFFFF, info.status & 0xFFFF, 0)
    device_id = struct.pack(PCIE_DEVICE_ID_FORMAT, info.vendor_id, info.device_id,
                            (info.class_code & 0xFF_FFFF).to_bytes(3, "little"), info.function, info.device,
                            info.segment, info.bus, info.secondary_bus, 0, 0)
    serial = info.serial_number or 0
    tail = struct.pack(PCIE_TAIL_FORMAT, serial & 0xFFFF_FFFF, serial >> 32 & 0xFFFF_FFFF,
                       (info.bridge_secondary_status or 0) & 0xFFFF, (info.bridge_control or 0) & 0xFFFF)
    section = (head + device_id + tail + info.capability.ljust(PCIE_CAPABILITY_SIZE, b"\0")
               + info.aer.ljust(PCIE_AER_INFO_SIZE, b"\0"))
    assert len(section) == PCIE_SECTION_SIZE
    return section


def pcie_error_record(info: PcieErrorInfo, severity: int = Severity.RECOVERABLE,
                      section_severity: int | None = None) -> bytes:
    """A record with one PCI Express Error Section (Linux: ghes_handle_aer -> aer_recover_queue);
    the section's severity is the record's unless `section_severity` is given."""
    return generic_error_status([Section(PCIE_ERROR_GUID, pcie_error_section(info), section_severity)], severity)


GuidLike = Union[bytes, uuid.UUID, str]


@functools.lru_cache(maxsize=64)      # a UUID's bytes_le is rebuilt at every access
def _guid(value: GuidLike) -> bytes:
    if isinstance(value, uuid.UUID):
        return value.bytes_le
    if isinstance(value, str):
        return guid_bytes(value)
    if len(value) != 16:
        raise ArmrasError(f"a section type GUID is 16 bytes, got {len(value)}")
    return bytes(value)


@dataclass(frozen=True)
class Section:
    """One section to wrap in a Generic Error Data Entry; severity defaults to the record's."""

    section_type: GuidLike
    payload: bytes
    severity: int | None = None
    fru_text: bytes = b""


def generic_error_data_entry(
    section_type: GuidLike, payload: bytes, severity: int = Severity.RECOVERABLE,
    *, fru_text: bytes = b"",
) -> bytes:
    """A 72-byte revision-0x0300 Generic Error Data Entry followed by its payload."""
    if len(fru_text) > FRU_TEXT_SIZE:
        raise ArmrasError(f"FRU text is at most {FRU_TEXT_SIZE} bytes")
    header = struct.pack(
        GDATA_FORMAT_V3, _guid(section_type), int(severity), GDATA_REVISION, 0, 0,
        len(payload), bytes(16), bytes(fru_text).ljust(FRU_TEXT_SIZE, b"\0"), 0,
    )
    return header + bytes(payload)


def block_status_for(severity: int) -> int:
    """Uncorrectable bit for recoverable/fatal, correctable bit otherwise.

    The entry count (bits 4-13) is left 0, as QEMU does; Linux does not read it.
    """
    if severity in (Severity.RECOVERABLE, Severity.FATAL):
        return BLOCK_STATUS_UNCORRECTABLE
    return BLOCK_STATUS_CORRECTABLE


def generic_error_status(
    sections: Sequence[Section | tuple[GuidLike, bytes]],
    severity: int = Severity.RECOVERABLE,
    *,
    block_status: int | None = None,
) -> bytes:
    """A Generic Error Status Block (20 bytes) followed by one data entry per section."""
    entries = b""
    for s in sections:
        if isinstance(s, Section):
            sev = severity if s.severity is None else s.severity
            entries += generic_error_data_entry(s.section_type, s.payload, sev, fru_text=s.fru_text)
        else:
            section_type, payload = s[0], s[1]
            entries += generic_error_data_entry(section_type, payload, severity)
    status = block_status_for(severity) if block_status is None else block_status
    return struct.pack(ESTATUS_FORMAT, status, 0, 0, len(entries), int(severity)) + entries


def memory_error_record(physical_address: int, severity: int = Severity.RECOVERABLE, *,
                        module_handle: int | None = None) -> bytes:
    """The 172-byte memory-error record QEMU's acpi_ghes_memory_errors writes (plus, if given,
    the DIMM's SMBIOS handle, which QEMU never sets)."""
    return generic_error_status(
        [(MEMORY_ERROR_GUID, memory_error_section(physical_address, module_handle=module_handle))], severity
    )


def arm_processor_record(
    mpidr: int,
    midr: int = 0,
    errors: Sequence[ArmErrorInfo] = (ArmErrorInfo(),),
    running_state: int = 1,
    *,
    severity: int = Severity.RECOVERABLE,
    affinity_level: int | None = 0,
    psci_state: int = 0,
    contexts: Sequence[ArmContextInfo] = (),
    vendor_data: bytes = b"",
) -> bytes:
    """A record with one ARM Processor Error Section (what QEMU's ghes_inject.py arm sends)."""
    section = arm_processor_section(
        mpidr, midr, errors, running_state, affinity_level=affinity_level,
        psci_state=psci_state, contexts=contexts, vendor_data=vendor_data,
    )
    return generic_error_status([(ARM_PROCESSOR_ERROR_GUID, section)], severity)


@dataclass
class DataEntry:
    section_type: uuid.UUID
    section_name: str
    severity: int
    revision: int
    payload: bytes
    physical_address: int | None = None
    header_size: int = GDATA_SIZE_V3


@dataclass
class ErrorStatus:
    block_status: int
    severity: int
    data_length: int
    entries: list[DataEntry] = field(default_factory=list)
    raw_data_offset: int = 0
    raw_data_length: int = 0

    @property
    def length(self) -> int:
        """Bytes the guest reads (Linux cper_estatus_len)."""
        if self.raw_data_length:
            return self.raw_data_offset + self.raw_data_length
        return ESTATUS_SIZE + self.data_length

    def describe(self) -> list[str]:
        """Lines in the spirit of Linux's cper_estatus_print."""
        lines = [
            f"block_status: {self.block_status:#x}",
            f"event severity: {severity_label(self.severity)}",
        ]
        for i, e in enumerate(self.entries):
            lines.append(f" Error {i}, type: {severity_label(e.severity)}")
            lines.append(f"  section_type: {e.section_name}")
            if e.physical_address is not None:
                lines.append(f"  physical_address: 0x{e.physical_address:016x}")
            if e.section_type == MEMORY_ERROR_GUID and len(e.payload) >= MEM_SECTION_SIZE:
                etype = e.payload[72]
                name = MEMORY_ERROR_TYPES[etype] if etype < len(MEMORY_ERROR_TYPES) else "unknown"
                lines.append(f"  error_type: {etype}, {name}")
        return lines


def section_name(section_type: uuid.UUID) -> str:
    for guid, name in SECTION_NAMES:
        if guid == section_type:
            return name
    return str(section_type).upper()


def _memory_pa(payload: bytes) -> int | None:
    if len(payload) < MEM_SECTION_SIZE:
        return None
    valid, _, pa = struct.unpack_from("<QQQ", payload)
    return pa if valid & MEM_VALID_PA else None


def estatus_severity(data: bytes) -> int | None:
    """The Error Severity field of a Generic Error Status Block, without parsing the rest
    (a raw record may be malformed on purpose); None if the block is too short to have one."""
    if len(data) < ESTATUS_SEVERITY_OFFSET + 4:
        return None
    (severity,) = struct.unpack_from("<I", data, ESTATUS_SEVERITY_OFFSET)
    return severity


def parse_generic_error_status(
    data: bytes, *, max_length: int = ERROR_BLOCK_SIZE, require_active: bool = False,
) -> ErrorStatus:
    """Parse a Generic Error Status Block with the checks Linux applies before using it.

    ``data`` may be longer than the record (a whole error status block); the extra bytes
    are ignored, as the guest ignores them.  With ``require_active`` a block_status of 0
    is refused too, since the guest treats such a block as empty.
    """
    data = bytes(data)
    if len(data) < ESTATUS_SIZE:
        raise ArmrasError(
            f"CPER truncated: {len(data)} bytes, a Generic Error Status Block needs {ESTATUS_SIZE}"
        )
    block_status, raw_off, raw_len, data_length, severity = struct.unpack_from(ESTATUS_FORMAT, data)
    st = ErrorStatus(block_status, severity, data_length, [], raw_off, raw_len)
    if require_active and block_status == 0:
        raise ArmrasError("CPER block_status is 0: the guest treats the block as empty")
    if st.length < ESTATUS_SIZE:
        raise ArmrasError(f"CPER truncated: record length {st.length} is below {ESTATUS_SIZE}")
    if st.length > max_length:
        raise ArmrasError(
            f"CPER record length {st.length} exceeds the {max_length}-byte error status block"
        )
    if data_length and data_length < GDATA_SIZE_V2:
        raise ArmrasError(
            f"CPER data_length {data_length} is smaller than a Generic Error Data Entry"
        )
    if raw_len and raw_off < ESTATUS_SIZE + data_length:
        raise ArmrasError(
            f"CPER raw data offset {raw_off} overlaps the data entries (ends at {ESTATUS_SIZE + data_length})"
        )
    if len(data) < st.length:
        raise ArmrasError(f"CPER truncated: {len(data)} bytes, the header says {st.length}")

    offset = 0
    while offset < data_length:
        remaining = data_length - offset
        pos = ESTATUS_SIZE + offset
        index = len(st.entries)
        if remaining < GDATA_REVISION_OFFSET + 2:
            raise ArmrasError(
                f"CPER entry {index}: only {remaining} bytes left of data_length {data_length}"
            )
        revision = struct.unpack_from("<H", data, pos + GDATA_REVISION_OFFSET)[0]
        hdr_size = GDATA_SIZE_V3 if revision >> 8 >= 3 else GDATA_SIZE_V2
        if hdr_size > remaining:
            raise ArmrasError(
                f"CPER entry {index} (revision {revision:#06x}): its {hdr_size}-byte header "
                f"overruns data_length {data_length} by {hdr_size - remaining}"
            )
        guid, sev, _, _, _, err_len, _, _ = struct.unpack_from(GDATA_FORMAT_V2, data, pos)
        if hdr_size + err_len > remaining:
            raise ArmrasError(
                f"CPER entry {index} (revision {revision:#06x}): {hdr_size}-byte header plus "
                f"{err_len} bytes of section data overrun data_length {data_length} "
                f"(entries must add up to data_length exactly)"
            )
        payload = data[pos + hdr_size:pos + hdr_size + err_len]
        stype = uuid.UUID(bytes_le=guid)
        st.entries.append(DataEntry(
            section_type=stype,
            section_name=section_name(stype),
            severity=sev,
            revision=revision,
            payload=payload,
            physical_address=_memory_pa(payload) if stype == MEMORY_ERROR_GUID else None,
            header_size=hdr_size,
        ))
        offset += hdr_size + err_len
    return st
