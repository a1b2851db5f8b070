"""Byte-level helpers for ACPI tables: the common header, the GAS, a field appender.

ACPI 6.4 5.2.6 (System Description Table Header) and 5.2.3.2 (Generic Address
Structure). Tables are built field by field, little-endian, in the style of QEMU's
hw/acpi/aml-build.c (`build_append_int_noprefix`, `acpi_table_begin/end`).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

HEADER_SIZE = 36
HEADER_LENGTH_OFFSET = 4
HEADER_CHECKSUM_OFFSET = 9
GAS_SIZE = 12
GAS_ADDRESS_OFFSET = 4

OEM_ID_LEN = 6
OEM_TABLE_ID_LEN = 8

DEFAULT_OEM_REVISION = 1
CREATOR_ID = b"ARMR"
CREATOR_REVISION = 1

# GAS address space ids (ACPI 6.4 Table 5.1).
GAS_SPACE_SYSTEM_MEMORY = 0
GAS_SPACE_SYSTEM_IO = 1

# GAS access sizes (ACPI 6.4 Table 5.1, "Access Size").
ACCESS_UNDEFINED = 0
ACCESS_BYTE = 1
ACCESS_WORD = 2
ACCESS_DWORD = 3
ACCESS_QWORD = 4


def checksum(data: bytes) -> int:
    """The byte that makes `data` (with that byte counted as 0) sum to 0 mod 256."""
    return (-sum(data)) & 0xFF


def pad_id(value: bytes, size: int) -> bytes:
    """An OEM/table id field: truncated or space-padded to `size` bytes."""
    if len(value) > size:
        raise ValueError(f"id {value!r} longer than {size} bytes")
    return value.ljust(size, b" ")


@dataclass(frozen=True)
class Gas:
    """ACPI Generic Address Structure (12 bytes)."""

    space_id: int
    bit_width: int
    bit_offset: int
    access_size: int
    address: int

    def pack(self) -> bytes:
        return struct.pack("<BBBBQ", self.space_id, self.bit_width, self.bit_offset,
                           self.access_size, self.address)

    @classmethod
    def unpack(cls, data: bytes, offset: int = 0) -> "Gas":
        return cls(*struct.unpack_from("<BBBBQ", data, offset))


def gas_memory(address: int, bit_width: int = 64, access_size: int = ACCESS_QWORD) -> Gas:
    """A SystemMemory GAS (the shape QEMU uses for the HEST registers by default)."""
    return Gas(GAS_SPACE_SYSTEM_MEMORY, bit_width, 0, access_size, address)


ZERO_GAS = Gas(0, 0, 0, 0, 0)


@dataclass
class TableBuilder:
    """Appends fields to a table body; `finish()` prepends the header and checksums it."""

    signature: bytes
    revision: int
    oem_id: bytes
    oem_table_id: bytes
    oem_revision: int = DEFAULT_OEM_REVISION
    body: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        if len(self.signature) != 4:
            raise ValueError(f"signature {self.signature!r} is not 4 bytes")

    @property
    def offset(self) -> int:
        """Offset of the next field from the start of the table (header included)."""
        return HEADER_SIZE + len(self.body)

    def u8(self, value: int) -> "TableBuilder":
        return self.uint(value, 1)

    def u16(self, value: int) -> "TableBuilder":
        return self.uint(value, 2)

    def u32(self, value: int) -> "TableBuilder":
        return self.uint(value, 4)

    def u64(self, value: int) -> "TableBuilder":
        return self.uint(value, 8)

    def uint(self, value: int, size: int) -> "TableBuilder":
        """As QEMU's build_append_int_noprefix: `size` little-endian bytes."""
        self.body += value.to_bytes(size, "little")
        return self

    def raw(self, data: bytes) -> "TableBuilder":
        self.body += data
        return self

    def reserved(self, size: int) -> "TableBuilder":
        self.body += bytes(size)
        return self

    def gas(self, gas: Gas) -> "TableBuilder":
        self.body += gas.pack()
        return self

    def finish(self) -> bytes:
        length = HEADER_SIZE + len(self.body)
        header = struct.pack(
            "<4sIBB6s8sI4sI",
            self.signature, length, self.revision, 0,
            pad_id(self.oem_id, OEM_ID_LEN), pad_id(self.oem_table_id, OEM_TABLE_ID_LEN),
            self.oem_revision, CREATOR_ID, CREATOR_REVISION,
        )
        table = bytearray(header + self.body)
        table[HEADER_CHECKSUM_OFFSET] = checksum(table)
        return bytes(table)


@dataclass(frozen=True)
class TableHeader:
    """A decoded 36-byte table header."""

    signature: str
    length: int
    revision: int
    checksum: int
    oem_id: bytes
    oem_table_id: bytes
    oem_revision: int
    creator_id: bytes
    creator_revision: int

    @classmethod
    def unpack(cls, data: bytes, offset: int = 0) -> "TableHeader":
        (sig, length, rev, csum, oem, oem_table, oem_rev, creator,
         creator_rev) = struct.unpack_from("<4sIBB6s8sI4sI", data, offset)
        return cls(sig.decode("ascii", "replace"), length, rev, csum, oem, oem_table,
                   oem_rev, creator, creator_rev)
