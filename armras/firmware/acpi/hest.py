"""The HEST: one GHES or GHESv2 entry per board error source (armras.ras.sources).

ACPI 6.4 18.3.2 (Hardware Error Source Table), 18.3.2.7 (GHES, type 9), 18.3.2.8 (GHESv2,
type 10) and Table 18.14 (notification structure). A GHESv2 entry is laid out byte for
byte as QEMU's hw/acpi/ghes.c `build_ghes_v2_entry`: the Error Status Address register of
source i points into the hardware-errors area (which in turn holds the address of error
status block i), the Read Ack register is the area's ack word i. A GHES entry is the same
without the Read Ack fields.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from armras.firmware.acpi.builder import HEADER_SIZE, Gas, TableBuilder, gas_memory
from armras.ras.hw_errors import READ_ACK_PRESERVE, READ_ACK_WRITE, HardwareErrorsLayout
from armras.ras.sources import Notify, SourceSpec

HEST_SIGNATURE = b"HEST"
HEST_REVISION = 1

HEST_TYPE_GHES = 9
HEST_TYPE_GHES_V2 = 10
GHES_ENTRY_SIZE = 64
GHES_V2_ENTRY_SIZE = 92
NOTIFICATION_STRUCT_SIZE = 28
HEST_SOURCE_COUNT_OFFSET = HEADER_SIZE           # u32 after the header
HEST_ENTRIES_OFFSET = HEADER_SIZE + 4

RELATED_SOURCE_NONE = 0xFFFF
GHES_ENABLED = 1
RECORDS_TO_PREALLOCATE = 1
MAX_SECTIONS_PER_RECORD = 1

# Offsets inside a GHESv2 entry (ACPI 6.4 Table 18.14).
GHES_OFF_TYPE = 0
GHES_OFF_SOURCE_ID = 2
GHES_OFF_ERROR_STATUS_ADDRESS = 20
GHES_OFF_NOTIFY = 32
GHES_OFF_BLOCK_LENGTH = 60
GHES_OFF_READ_ACK_REGISTER = 64
GHES_OFF_READ_ACK_PRESERVE = 76
GHES_OFF_READ_ACK_WRITE = 84

# Names as ACPI 6.4 Table 18.14 (and iasl) spell them.
NOTIFY_ACPI_NAMES = {
    Notify.POLLED: "Polled", Notify.EXTERNAL: "External Interrupt", Notify.LOCAL: "Local Interrupt",
    Notify.SCI: "SCI", Notify.NMI: "NMI", Notify.CMCI: "CMCI", Notify.MCE: "MCE", Notify.GPIO: "GPIO-Signal",
    Notify.SEA: "SEA", Notify.SEI: "SEI", Notify.GSIV: "GSIV", Notify.SDEI: "Software Delegated Exception",
}


def notify_name(notify_type: int) -> str:
    return NOTIFY_ACPI_NAMES.get(notify_type, f"reserved({notify_type})")  # type: ignore[call-overload]


def notification_structure(spec: SourceSpec) -> bytes:
    """Hardware Error Notification Structure: type, length 28, poll interval, vector; no thresholds."""
    return struct.pack("<BBH6I", spec.notify, NOTIFICATION_STRUCT_SIZE, 0, spec.poll_interval_ms,
                       spec.vector, 0, 0, 0, 0)


def register_gas(address: int) -> Gas:
    """The register GAS QEMU uses: SystemMemory, 64 bits, offset 0, QWord access."""
    return gas_memory(address, bit_width=64)


def ghes_entry(spec: SourceSpec, error_status_address_reg: int, read_ack_reg: int) -> bytes:
    """One GHESv2 entry (type 10, 92 bytes) or, for a v1 source, a GHES entry (type 9, 64 bytes)."""
    v2 = spec.ghes_version == 2
    entry = (
        struct.pack("<HHHBB", HEST_TYPE_GHES_V2 if v2 else HEST_TYPE_GHES, spec.source_id,
                    RELATED_SOURCE_NONE, 0, GHES_ENABLED)
        + struct.pack("<III", RECORDS_TO_PREALLOCATE, MAX_SECTIONS_PER_RECORD, spec.block_length)
        + register_gas(error_status_address_reg).pack()
        + notification_structure(spec)
        + struct.pack("<I", spec.block_length)
    )
    if v2:
        entry += register_gas(read_ack_reg).pack() + struct.pack("<QQ", READ_ACK_PRESERVE, READ_ACK_WRITE)
    assert len(entry) == (GHES_V2_ENTRY_SIZE if v2 else GHES_ENTRY_SIZE)
    return entry


def build_hest(sources: Sequence[SourceSpec], hw_errors: HardwareErrorsLayout,
               oem_id: bytes, oem_table_id: bytes) -> bytes:
    """HEST for `sources`; source i uses slot i of the hardware-errors area."""
    if len(sources) != hw_errors.num_sources:
        raise ValueError(f"{len(sources)} sources but the hardware-errors area has "
                         f"{hw_errors.num_sources} slots")
    tb = TableBuilder(HEST_SIGNATURE, HEST_REVISION, oem_id, oem_table_id)
    tb.u32(len(sources))
    for index, spec in enumerate(sources):
        if spec.block_length != hw_errors.block_length(index):
            raise ValueError(f"source {spec.source_id}: block length {spec.block_length} but slot {index} "
                             f"of the hardware-errors area has {hw_errors.block_length(index)}")
        tb.raw(ghes_entry(spec, hw_errors.error_status_address_reg(index), hw_errors.read_ack_reg(index)))
    return tb.finish()


@dataclass(frozen=True)
class GhesEntry:
    """A decoded GHES (type 9) or GHESv2 (type 10) entry (what Linux's ghes_new reads)."""

    offset: int                  # from the start of the HEST
    type: int
    source_id: int
    related_source_id: int
    flags: int
    enabled: int
    records_to_preallocate: int
    max_sections_per_record: int
    max_raw_data_length: int
    error_status_address: Gas
    notify_type: int
    notify_length: int
    poll_interval: int
    vector: int
    error_status_block_length: int
    read_ack_register: Gas | None          # GHESv2 only
    read_ack_preserve: int | None
    read_ack_write: int | None

    @property
    def size(self) -> int:
        return GHES_V2_ENTRY_SIZE if self.type == HEST_TYPE_GHES_V2 else GHES_ENTRY_SIZE

    @classmethod
    def unpack(cls, hest: bytes, offset: int) -> "GhesEntry":
        (etype, source_id, related, flags, enabled, prealloc, max_sections,
         max_raw) = struct.unpack_from("<HHHBBIII", hest, offset)
        esa = Gas.unpack(hest, offset + GHES_OFF_ERROR_STATUS_ADDRESS)
        notify_type, notify_len, _cwe, poll, vector = struct.unpack_from("<BBHII", hest, offset + GHES_OFF_NOTIFY)
        (block_len,) = struct.unpack_from("<I", hest, offset + GHES_OFF_BLOCK_LENGTH)
        ack = preserve = write = None
        if etype == HEST_TYPE_GHES_V2:
            ack = Gas.unpack(hest, offset + GHES_OFF_READ_ACK_REGISTER)
            preserve, write = struct.unpack_from("<QQ", hest, offset + GHES_OFF_READ_ACK_PRESERVE)
        return cls(offset, etype, source_id, related, flags, enabled, prealloc, max_sections,
                   max_raw, esa, notify_type, notify_len, poll, vector, block_len, ack, preserve, write)


def parse_hest_entries(hest: bytes) -> list[GhesEntry]:
    """Decode the GHES/GHESv2 entries of a HEST; raises ValueError on other entry types."""
    (count,) = struct.unpack_from("<I", hest, HEST_SOURCE_COUNT_OFFSET)
    entries = []
    offset = HEST_ENTRIES_OFFSET
    for _ in range(count):
        if offset + 2 > len(hest):
            raise ValueError(f"HEST truncated at entry offset {offset}")
        (etype,) = struct.unpack_from("<H", hest, offset)
        if etype not in (HEST_TYPE_GHES, HEST_TYPE_GHES_V2):
            raise ValueError(f"HEST: type {etype} not supported")
        size = GHES_V2_ENTRY_SIZE if etype == HEST_TYPE_GHES_V2 else GHES_ENTRY_SIZE
        if offset + size > len(hest):
            raise ValueError(f"HEST truncated at entry offset {offset}")
        entries.append(GhesEntry.unpack(hest, offset))
        offset += size
    return entries


__all__ = [
    "GHES_ENTRY_SIZE", "GHES_V2_ENTRY_SIZE", "GhesEntry", "build_hest", "ghes_entry",
    "notify_name", "parse_hest_entries",
]
