"""The HEST with one GHESv2 entry per board error source, byte for byte as QEMU builds it.

ACPI 6.4 18.3.2 (Hardware Error Source Table) and 18.3.2.8 (GHESv2). Mirrors QEMU's
hw/acpi/ghes.c `acpi_build_hest` / `build_ghes_v2_entry`: the Error Status Address
register of source i points into the hardware-errors blob (which in turn holds the
address of error status block i), the Read Ack register is the blob's ack word i.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from armras.firmware.acpi.builder import HEADER_SIZE, Gas, TableBuilder, gas_memory
from armras.ras.hw_errors import (
    ERROR_BLOCK_SIZE,
    READ_ACK_PRESERVE,
    READ_ACK_WRITE,
    HardwareErrorsLayout,
)

HEST_SIGNATURE = b"HEST"
HEST_REVISION = 1

HEST_TYPE_GHES_V2 = 10
GHES_V2_ENTRY_SIZE = 92
NOTIFICATION_STRUCT_SIZE = 28
HEST_SOURCE_COUNT_OFFSET = HEADER_SIZE           # u32 after the header
HEST_ENTRIES_OFFSET = HEADER_SIZE + 4

RELATED_SOURCE_NONE = 0xFFFF
GHES_ENABLED = 1
RECORDS_TO_PREALLOCATE = 1
MAX_SECTIONS_PER_RECORD = 1
MAX_RAW_DATA_LENGTH = ERROR_BLOCK_SIZE            # QEMU ACPI_GHES_MAX_RAW_DATA_LENGTH

# Offsets inside a GHESv2 entry (ACPI 6.4 Table 18.14).
GHES_OFF_TYPE = 0
GHES_OFF_SOURCE_ID = 2
GHES_OFF_ERROR_STATUS_ADDRESS = 20
GHES_OFF_NOTIFY = 32
GHES_OFF_BLOCK_LENGTH = 60
GHES_OFF_READ_ACK_REGISTER = 64
GHES_OFF_READ_ACK_PRESERVE = 76
GHES_OFF_READ_ACK_WRITE = 84

# Hardware Error Notification types (ACPI 6.4 Table 18.16).
NOTIFY_NAMES: dict[int, str] = {
    0: "Polled",
    1: "External Interrupt",
    2: "Local Interrupt",
    3: "SCI",
    4: "NMI",
    5: "CMCI",
    6: "MCE",
    7: "GPIO-Signal",
    8: "SEA",
    9: "SEI",
    10: "GSIV",
    11: "SDEI",
}


def notify_name(notify_type: int) -> str:
    return NOTIFY_NAMES.get(notify_type, f"reserved({notify_type})")


def notification_structure(notify_type: int) -> bytes:
    """Hardware Error Notification Structure: type, length 28, everything else 0."""
    return struct.pack("<BBH6I", notify_type, NOTIFICATION_STRUCT_SIZE, 0, 0, 0, 0, 0, 0, 0)


def register_gas(address: int) -> Gas:
    """The register GAS QEMU uses: SystemMemory, 64 bits, offset 0, QWord access."""
    return gas_memory(address, bit_width=64)


def ghes_v2_entry(source_id: int, notify_type: int, error_status_address_reg: int,
                  read_ack_reg: int) -> bytes:
    """One 92-byte GHESv2 entry (type 10)."""
    entry = (
        struct.pack("<HHHBB", HEST_TYPE_GHES_V2, source_id, RELATED_SOURCE_NONE, 0, GHES_ENABLED)
        + struct.pack("<III", RECORDS_TO_PREALLOCATE, MAX_SECTIONS_PER_RECORD, MAX_RAW_DATA_LENGTH)
        + register_gas(error_status_address_reg).pack()
        + notification_structure(notify_type)
        + struct.pack("<I", ERROR_BLOCK_SIZE)
        + register_gas(read_ack_reg).pack()
        + struct.pack("<QQ", READ_ACK_PRESERVE, READ_ACK_WRITE)
    )
    assert len(entry) == GHES_V2_ENTRY_SIZE
    return entry


def build_hest(sources: Sequence[tuple[int, int]], hw_errors: HardwareErrorsLayout,
               oem_id: bytes, oem_table_id: bytes) -> bytes:
    """HEST for `sources` ((source id, notify type), ...); index i uses blob slot i."""
    if len(sources) != hw_errors.num_sources:
        raise ValueError(f"{len(sources)} sources but the hardware-errors blob has "
                         f"{hw_errors.num_sources} slots")
    tb = TableBuilder(HEST_SIGNATURE, HEST_REVISION, oem_id, oem_table_id)
    tb.u32(len(sources))
    for index, (source_id, notify_type) in enumerate(sources):
        tb.raw(ghes_v2_entry(source_id, notify_type, hw_errors.error_status_address_reg(index),
                             hw_errors.read_ack_reg(index)))
    return tb.finish()


@dataclass(frozen=True)
class GhesV2Entry:
    """A decoded GHESv2 entry (what Linux's ghes_new reads)."""

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
    error_status_block_length: int
    read_ack_register: Gas
    read_ack_preserve: int
    read_ack_write: int

    @classmethod
    def unpack(cls, hest: bytes, offset: int) -> "GhesV2Entry":
        (etype, source_id, related, flags, enabled, prealloc, max_sections,
         max_raw) = struct.unpack_from("<HHHBBIII", hest, offset)
        esa = Gas.unpack(hest, offset + GHES_OFF_ERROR_STATUS_ADDRESS)
        notify_type, notify_len = struct.unpack_from("<BB", hest, offset + GHES_OFF_NOTIFY)
        (block_len,) = struct.unpack_from("<I", hest, offset + GHES_OFF_BLOCK_LENGTH)
        ack = Gas.unpack(hest, offset + GHES_OFF_READ_ACK_REGISTER)
        preserve, write = struct.unpack_from("<QQ", hest, offset + GHES_OFF_READ_ACK_PRESERVE)
        return cls(offset, etype, source_id, related, flags, enabled, prealloc, max_sections,
                   max_raw, esa, notify_type, notify_len, block_len, ack, preserve, write)


def parse_hest_entries(hest: bytes) -> list[GhesV2Entry]:
    """Decode the GHESv2 entries of a HEST; raises ValueError on other entry types."""
    (count,) = struct.unpack_from("<I", hest, HEST_SOURCE_COUNT_OFFSET)
    entries = []
    offset = HEST_ENTRIES_OFFSET
    for _ in range(count):
        if offset + GHES_V2_ENTRY_SIZE > len(hest):
            raise ValueError(f"HEST truncated at entry offset {offset}")
        (etype,) = struct.unpack_from("<H", hest, offset)
        if etype != HEST_TYPE_GHES_V2:
            raise ValueError(f"HEST: type {etype} not supported")
        entries.append(GhesV2Entry.unpack(hest, offset))
        offset += GHES_V2_ENTRY_SIZE
    return entries


__all__ = [
    "GHES_V2_ENTRY_SIZE", "GhesV2Entry", "build_hest", "ghes_v2_entry",
    "notify_name", "parse_hest_entries",
]
