"""The platform's error record store behind the ERST (ACPI 6.4 18.5, Error Serialization).

The ERST tells the OS how to save, read and clear error records in platform storage
that survives reboots; Linux (drivers/acpi/apei/erst.c) uses it as a pstore backend.
This module holds what the spec fixes (the serialization actions, instructions and
command status codes, ACPI 6.4 Tables 18.27, 18.29 and 18.30) and the store itself:
records keyed by their CPER record id, at most `capacity` records of at most
`record_size` bytes each (QEMU hw/acpi/erst.c's default record size, 8 KiB).

The store lives in memory for the run, or in a host file (`armras run --erst FILE`) so
records survive runs. Every change rewrites the file atomically (a temporary file in
the same directory, fsync, rename over the old one): a crash mid-write leaves the old
store, i.e. loses at most that record. The file format (little-endian):

    header  magic "ARMRERST", version u32, record_size u32, capacity u32,
            record count u32, CRC-32 of everything after the header u32, reserved u32
    records (count of them) id u64, length u32, CRC-32 of the data u32, data[length]

A file that is not such a store is refused with one line, never overwritten.
"""
from __future__ import annotations

import enum
import logging
import os
import stat
import struct
import tempfile
import zlib
from pathlib import Path

from armras.errors import ArmrasError

log = logging.getLogger(__name__)


class Action(enum.IntEnum):
    """Serialization actions (ACPI 6.4 Table 18.27)."""

    BEGIN_WRITE_OPERATION = 0x0
    BEGIN_READ_OPERATION = 0x1
    BEGIN_CLEAR_OPERATION = 0x2
    END_OPERATION = 0x3
    SET_RECORD_OFFSET = 0x4
    EXECUTE_OPERATION = 0x5
    CHECK_BUSY_STATUS = 0x6
    GET_COMMAND_STATUS = 0x7
    GET_RECORD_IDENTIFIER = 0x8
    SET_RECORD_IDENTIFIER = 0x9
    GET_RECORD_COUNT = 0xA
    BEGIN_DUMMY_WRITE_OPERATION = 0xB
    GET_ERROR_LOG_ADDRESS_RANGE = 0xD
    GET_ERROR_LOG_ADDRESS_RANGE_LENGTH = 0xE
    GET_ERROR_LOG_ADDRESS_RANGE_ATTRIBUTES = 0xF
    GET_EXECUTE_OPERATION_TIMINGS = 0x10


class Instruction(enum.IntEnum):
    """Serialization instructions (ACPI 6.4 Table 18.29); the ones the board's ERST uses."""

    READ_REGISTER = 0x00
    READ_REGISTER_VALUE = 0x01
    WRITE_REGISTER = 0x02
    WRITE_REGISTER_VALUE = 0x03


class Status(enum.IntEnum):
    """Command status (ACPI 6.4 Table 18.30)."""

    SUCCESS = 0
    NOT_ENOUGH_SPACE = 1
    HARDWARE_NOT_AVAILABLE = 2
    FAILED = 3
    RECORD_STORE_EMPTY = 4
    RECORD_NOT_FOUND = 5


# Record identifiers with a meaning of their own (ACPI 6.4 18.5.2.2 / 18.5.1.1).
UNSPECIFIED_RECORD_ID = 0
EMPTY_END_RECORD_ID = 0xFFFF_FFFF_FFFF_FFFF

# The CPER record header fields the store needs (UEFI 2.10 N.2.1, Record Header).
CPER_RECORD_MIN_SIZE = 128                 # the record header alone
CPER_RECORD_LENGTH_OFFSET = 20             # u32 Record Length
CPER_RECORD_ID_OFFSET = 96                 # u64 Record ID

RECORD_SIZE = 8 * 1024        # largest record (QEMU ERST_RECORD_SIZE); also the exchange buffer length
DEFAULT_CAPACITY = 64         # records: a full store is 512 KiB of record data
MAX_CAPACITY = 1024
MIN_RECORD_SIZE = 4096        # as QEMU: at least a page, a power of two
MAX_RECORD_SIZE = 64 * 1024

FILE_MAGIC = b"ARMRERST"
FILE_VERSION = 1
FILE_HEADER = struct.Struct("<8sIIIIII")   # magic, version, record_size, capacity, count, crc, reserved
RECORD_HEADER = struct.Struct("<QII")      # id, length, crc32
MAX_FILE_SIZE = FILE_HEADER.size + MAX_CAPACITY * (RECORD_HEADER.size + MAX_RECORD_SIZE)


def read_store_file(path: Path, missing_ok: bool = False) -> bytes:
    """A store file's bytes (b"" if absent and `missing_ok`); one-line errors for anything
    that is not a regular file of plausible size (a FIFO or /dev/zero must not hang us)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if missing_ok:
            return b""
        raise ArmrasError(f"ERST store {path} does not exist") from None
    except OSError as e:
        raise ArmrasError(f"cannot read ERST store {path}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ArmrasError(f"ERST store {path} is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise ArmrasError(f"ERST store {path} is not a regular file")
    if st.st_size > MAX_FILE_SIZE:
        raise ArmrasError(f"{path} ({st.st_size} bytes) is larger than any armras ERST store; refusing to use it")
    try:
        with open(path, "rb") as f:
            return f.read(MAX_FILE_SIZE + 1)
    except OSError as e:
        raise ArmrasError(f"cannot read ERST store {path}: {e.strerror}") from None


def valid_record_id(record_id: int) -> bool:
    return record_id not in (UNSPECIFIED_RECORD_ID, EMPTY_END_RECORD_ID)


def _check_geometry(record_size: int, capacity: int, where: str) -> None:
    if not (MIN_RECORD_SIZE <= record_size <= MAX_RECORD_SIZE and record_size & (record_size - 1) == 0):
        raise ArmrasError(f"{where}: record size {record_size} is not a power of two in "
                          f"{MIN_RECORD_SIZE}..{MAX_RECORD_SIZE}")
    if not 1 <= capacity <= MAX_CAPACITY:
        raise ArmrasError(f"{where}: capacity {capacity} is not 1..{MAX_CAPACITY} records")


class ErstStore:
    """Error records by id, bounded, optionally kept in a host file."""

    def __init__(self, path: Path | None = None, capacity: int = DEFAULT_CAPACITY,
                 record_size: int = RECORD_SIZE) -> None:
        _check_geometry(record_size, capacity, str(path) if path else "ERST store")
        self.path = path
        self.capacity = capacity
        self.record_size = record_size
        self.records: dict[int, bytes] = {}     # insertion order is the order the OS iterates

    # --- the host file ---------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, capacity: int = DEFAULT_CAPACITY) -> "ErstStore":
        """The store in `path`: loaded if the file holds one, created if it is absent or empty.
        A symbolic link is followed: the file it names is the one rewritten."""
        path = Path(path).resolve()
        data = read_store_file(path, missing_ok=True)
        if not data:
            store = cls(path, capacity)
            store.save(raise_errors=True)
            log.info("ERST: new store %s (%d records of %d bytes)", path, capacity, store.record_size)
            return store
        store = cls.decode(data, str(path))
        store.path = path
        log.info("ERST: %s holds %d record(s)", path, len(store.records))
        return store

    @classmethod
    def decode(cls, data: bytes, where: str = "ERST store") -> "ErstStore":
        """Parse a store file's bytes; ArmrasError (one line) unless it is a sound store."""
        if len(data) < FILE_HEADER.size or data[:len(FILE_MAGIC)] != FILE_MAGIC:
            raise ArmrasError(f"{where} is not an armras ERST store (no {FILE_MAGIC.decode()} header); "
                              f"refusing to use or overwrite it")
        magic, version, record_size, capacity, count, crc, _ = FILE_HEADER.unpack_from(data)
        if version != FILE_VERSION:
            raise ArmrasError(f"{where}: ERST store version {version}, this armras reads version {FILE_VERSION}")
        _check_geometry(record_size, capacity, where)
        body = data[FILE_HEADER.size:]
        if zlib.crc32(body) != crc:
            raise ArmrasError(f"{where}: ERST store is corrupt (checksum mismatch); refusing to use it")
        if count > capacity:
            raise ArmrasError(f"{where}: ERST store is corrupt ({count} records, capacity {capacity})")
        store = cls(None, capacity, record_size)
        offset = 0
        for _ in range(count):
            if offset + RECORD_HEADER.size > len(body):
                raise ArmrasError(f"{where}: ERST store is corrupt (truncated record header)")
            record_id, length, rcrc = RECORD_HEADER.unpack_from(body, offset)
            offset += RECORD_HEADER.size
            record = body[offset:offset + length]
            offset += length
            if (len(record) != length or not CPER_RECORD_MIN_SIZE <= length <= record_size
                    or zlib.crc32(record) != rcrc or not valid_record_id(record_id)
                    or record_id in store.records):
                raise ArmrasError(f"{where}: ERST store is corrupt (bad record {record_id:#x})")
            store.records[record_id] = record
        if offset != len(body):
            raise ArmrasError(f"{where}: ERST store is corrupt ({len(body) - offset} trailing bytes)")
        return store

    def encode(self) -> bytes:
        body = b"".join(RECORD_HEADER.pack(rid, len(rec), zlib.crc32(rec)) + rec
                        for rid, rec in self.records.items())
        return FILE_HEADER.pack(FILE_MAGIC, FILE_VERSION, self.record_size, self.capacity,
                                len(self.records), zlib.crc32(body), 0) + body

    def save(self, raise_errors: bool = False) -> bool:
        """Replace the host file atomically with the current records (no-op in memory)."""
        if self.path is None:
            return True
        directory = self.path.parent
        tmp_name: str | None = None
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
            with os.fdopen(fd, "wb") as f:
                f.write(self.encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_name, self.path)
            tmp_name = None
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            return True
        except OSError as e:
            if raise_errors:
                raise ArmrasError(f"cannot write ERST store {self.path}: {e.strerror}") from None
            log.warning("ERST: cannot write %s: %s (the record is not kept)", self.path, e.strerror)
            return False
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except OSError:
                    pass

    # --- what the serialization operations do (ACPI 6.4 18.5.2) ------------------------------
    def write(self, record: bytes) -> Status:
        """Store a CPER record (its own id and length say which and how much); overwrite by id."""
        if len(record) < CPER_RECORD_MIN_SIZE:
            return Status.FAILED
        length = struct.unpack_from("<I", record, CPER_RECORD_LENGTH_OFFSET)[0]
        record_id = struct.unpack_from("<Q", record, CPER_RECORD_ID_OFFSET)[0]
        if not CPER_RECORD_MIN_SIZE <= length <= min(len(record), self.record_size):
            return Status.FAILED
        if not valid_record_id(record_id):
            return Status.FAILED
        if record_id not in self.records and len(self.records) >= self.capacity:
            return Status.NOT_ENOUGH_SPACE
        previous = self.records.get(record_id)
        self.records[record_id] = bytes(record[:length])
        if not self.save():
            if previous is None:
                del self.records[record_id]
            else:
                self.records[record_id] = previous
            return Status.HARDWARE_NOT_AVAILABLE
        log.info("ERST: wrote record %#x (%d bytes)", record_id, length)
        return Status.SUCCESS

    def read(self, record_id: int) -> bytes | None:
        return self.records.get(record_id)

    def clear(self, record_id: int) -> Status:
        if not valid_record_id(record_id):
            return Status.FAILED
        previous = self.records.pop(record_id, None)
        if previous is None:
            return Status.RECORD_NOT_FOUND
        if not self.save():
            self.records[record_id] = previous   # order changes; harmless
            return Status.HARDWARE_NOT_AVAILABLE
        log.info("ERST: cleared record %#x", record_id)
        return Status.SUCCESS

    def ids(self) -> list[int]:
        return list(self.records)

    def __len__(self) -> int:
        return len(self.records)


__all__ = [
    "Action",
    "CPER_RECORD_ID_OFFSET",
    "CPER_RECORD_LENGTH_OFFSET",
    "CPER_RECORD_MIN_SIZE",
    "DEFAULT_CAPACITY",
    "EMPTY_END_RECORD_ID",
    "ErstStore",
    "Instruction",
    "RECORD_SIZE",
    "Status",
    "UNSPECIFIED_RECORD_ID",
    "read_store_file",
    "valid_record_id",
]
