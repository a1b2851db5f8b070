"""The ERST record store: ids, bounds, the host file, refusal of foreign or corrupt files,
and atomic writes (a crash mid-write leaves the previous store).

Status codes are ACPI 6.4 Table 18.30 ("Command Status Definitions"), written here as the
spec's numbers; a CPER record's length is the u32 at byte 20 and its id the u64 at byte 96
(UEFI 2.10 Table N-1).
"""
from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import pytest

from armras.errors import ArmrasError
from armras.ras import erst
from armras.ras.erst import ErstStore, read_store_file

ALL_ONES = 0xFFFF_FFFF_FFFF_FFFF
SUCCESS, NOT_ENOUGH_SPACE, HARDWARE_NOT_AVAILABLE, FAILED, RECORD_STORE_EMPTY, RECORD_NOT_FOUND = range(6)


def cper(record_id: int, length: int = 256, fill: int = 0xA5) -> bytes:
    """A minimal CPER record: signature, Record Length at 20, Record ID at 96, payload."""
    rec = bytearray([fill]) * length
    rec[0:4] = b"CPER"
    rec[4:6] = struct.pack("<H", 0x0101)
    rec[6:10] = b"\xff\xff\xff\xff"
    rec[20:24] = struct.pack("<I", length)
    rec[96:104] = struct.pack("<Q", record_id)
    return bytes(rec)


def test_write_read_overwrite_clear_in_memory() -> None:
    store = ErstStore()
    assert store.write(cper(7)) == SUCCESS
    assert store.write(cper(9, 300)) == SUCCESS
    assert store.ids() == [7, 9]
    assert store.read(9) == cper(9, 300)
    assert store.write(cper(7, 200, fill=0x11)) == SUCCESS       # same id: replaced, not added
    assert len(store) == 2 and store.read(7) == cper(7, 200, fill=0x11)
    assert store.clear(7) == SUCCESS
    assert store.clear(7) == RECORD_NOT_FOUND
    assert store.read(7) is None and store.ids() == [9]


def test_only_the_records_own_length_is_kept() -> None:
    store = ErstStore()
    rec = cper(5, 200) + b"trailing bytes beyond the record length"
    assert store.write(rec) == SUCCESS
    assert store.read(5) == cper(5, 200)


@pytest.mark.parametrize("record", [
    cper(0),                                # all zeros: "unspecified" id
    cper(0xFFFF_FFFF_FFFF_FFFF),            # all ones: "empty/end"
    cper(3, 64)[:64],                       # shorter than the 128-byte header
    cper(3, 8193),                          # longer than a record may be (8 KiB)
    cper(3)[:20] + struct.pack("<I", 127) + cper(3)[24:],   # length below the header
    cper(3)[:20] + struct.pack("<I", 4096) + cper(3)[24:],  # length beyond the bytes given
])
def test_bad_records_fail(record: bytes) -> None:
    store = ErstStore()
    assert store.write(record) == FAILED
    assert len(store) == 0


def test_bad_ids_to_clear_fail() -> None:
    store = ErstStore()
    assert store.clear(0) == FAILED
    assert store.clear(0xFFFF_FFFF_FFFF_FFFF) == FAILED


def test_full_store_is_not_enough_space_but_overwrite_still_works() -> None:
    store = ErstStore(capacity=3)
    for i in range(1, 4):
        assert store.write(cper(i)) == SUCCESS
    assert store.write(cper(4)) == NOT_ENOUGH_SPACE
    assert store.write(cper(2, 500)) == SUCCESS
    assert store.ids() == [1, 2, 3] and len(store.read(2) or b"") == 500
    assert store.clear(1) == SUCCESS
    assert store.write(cper(4)) == SUCCESS


def test_file_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.erst"
    store = ErstStore.open(path)
    assert path.read_bytes()[:8] == b"ARMRERST"                 # created at once
    assert store.write(cper(0x1234, 1000)) == SUCCESS
    assert store.write(cper(0x99, 8192)) == SUCCESS             # the largest record
    again = ErstStore.open(path)
    assert again.ids() == [0x1234, 0x99]
    assert again.read(0x1234) == cper(0x1234, 1000) and again.read(0x99) == cper(0x99, 8192)
    assert again.clear(0x1234) == SUCCESS
    assert ErstStore.open(path).ids() == [0x99]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.erst"]   # no temporary left behind


def test_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "touched.erst"
    path.write_bytes(b"")
    assert len(ErstStore.open(path)) == 0
    assert path.read_bytes()[:8] == b"ARMRERST"


def test_foreign_file_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"my precious notes\n")
    with pytest.raises(ArmrasError, match="not an armras ERST store.*refusing"):
        ErstStore.open(path)
    assert path.read_bytes() == b"my precious notes\n"


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArmrasError, match="is a directory"):
        ErstStore.open(tmp_path)


@pytest.mark.parametrize("damage, why", [
    ("flip", "ERST store is corrupt (checksum mismatch); refusing to use it"),
    ("truncate", "ERST store is corrupt (checksum mismatch); refusing to use it"),
    ("append", "ERST store is corrupt (checksum mismatch); refusing to use it"),
    ("version", "ERST store version 99, this armras reads version 1"),
])
def test_corrupt_file_is_refused_and_kept(tmp_path: Path, damage: str, why: str) -> None:
    path = tmp_path / "store.erst"
    store = ErstStore.open(path)
    store.write(cper(1, 400))
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[200] ^= 0x40
    elif damage == "truncate":
        del data[-10:]
    elif damage == "append":
        data += b"junk"
    else:
        data[8] = 99
    path.write_bytes(bytes(data))
    with pytest.raises(ArmrasError) as e:
        ErstStore.open(path)
    assert str(e.value) == f"{path}: {why}"
    assert path.read_bytes() == bytes(data)


def test_record_count_against_capacity_and_the_geometry_kept(tmp_path: Path) -> None:
    full = ErstStore(capacity=1, record_size=16384)
    full.write(cper(1, 9000))                                    # larger than 8 KiB: needs the 16 KiB size
    again = ErstStore.decode(full.encode())                      # exactly at capacity is sound
    assert (again.capacity, again.record_size, again.ids()) == (1, 16384, [1])
    assert again.read(1) == cper(1, 9000)
    body = full.encode()[32:]
    over = struct.pack("<8sIIIIII", b"ARMRERST", 1, 16384, 1, 2, zlib.crc32(body), 0) + body
    assert _message(lambda: ErstStore.decode(over, "f.erst")) == "f.erst: ERST store is corrupt (2 records, capacity 1)"
    # Shorter than the header, even with the magic: not a store.
    assert _message(lambda: ErstStore.decode(b"ARMRERST\x01\x00")) == (
        "ERST store is not an armras ERST store (no ARMRERST header); refusing to use or overwrite it")


def test_crash_mid_write_keeps_the_previous_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rename is the commit point: dying before it (here: fsync or rename fails) loses
    only the record being written; the file on disk is the previous, sound store."""
    path = tmp_path / "store.erst"
    store = ErstStore.open(path)
    assert store.write(cper(1)) == SUCCESS
    before = path.read_bytes()

    def crash(*args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    assert store.write(cper(2)) == HARDWARE_NOT_AVAILABLE        # the guest learns it was not kept
    assert store.ids() == [1]                                    # memory agrees with the file
    monkeypatch.setattr(os, "fsync", crash)
    assert store.write(cper(1, 300)) == HARDWARE_NOT_AVAILABLE   # an overwrite that fails keeps the old one
    assert store.read(1) == cper(1)
    assert store.clear(1) == HARDWARE_NOT_AVAILABLE
    assert store.read(1) == cper(1)                              # a clear that fails keeps the record
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert ErstStore.open(path).ids() == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.erst"]


def test_crash_after_a_partial_temporary_file(tmp_path: Path) -> None:
    """A half-written temporary (the process killed mid-write) is not the store."""
    path = tmp_path / "store.erst"
    store = ErstStore.open(path)
    store.write(cper(1))
    full = ErstStore.open(path)
    full.records[2] = cper(2)
    (tmp_path / ".store.erst.abc.tmp").write_bytes(full.encode()[:100])
    assert ErstStore.open(path).ids() == [1]


def test_unwritable_directory_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "store.erst"
    with pytest.raises(ArmrasError, match="cannot write ERST store"):
        ErstStore.open(missing)


def test_special_and_huge_files_are_refused_without_reading_them(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.erst"
    os.mkfifo(fifo)
    with pytest.raises(ArmrasError, match="not a regular file"):
        ErstStore.open(fifo)
    with pytest.raises(ArmrasError, match="not a regular file"):
        ErstStore.open(Path("/dev/zero"))
    huge = tmp_path / "huge.erst"
    with open(huge, "wb") as f:
        f.truncate(1 << 30)                                      # sparse: 1 GiB
    with pytest.raises(ArmrasError, match="larger than any armras ERST store"):
        ErstStore.open(huge)


def test_a_symlink_is_followed_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "real.erst"
    link = tmp_path / "link.erst"
    link.symlink_to(target)
    store = ErstStore.open(link)
    assert store.write(cper(1)) == SUCCESS
    assert link.is_symlink() and ErstStore.open(target).ids() == [1]


# --- what mutation testing found unchecked (benchmarks/mutation.sh) ---------------------

def test_file_format_field_by_field(tmp_path: Path) -> None:
    """The module docstring's layout: header magic "ARMRERST", version 1, record size, capacity,
    record count, CRC-32 of the body, reserved 0; then per record id u64, length u32, CRC-32, data."""
    path = tmp_path / "store.erst"
    store = ErstStore.open(path, capacity=5)
    store.write(cper(0x1122_3344_5566_7788, 200))
    store.write(cper(3, 128))
    data = path.read_bytes()
    assert data == store.encode()
    magic, version, record_size, capacity, count, crc, reserved = struct.unpack_from("<8sIIIIII", data)
    assert (magic, version, record_size, capacity, count, reserved) == (b"ARMRERST", 1, 8192, 5, 2, 0)
    body = data[32:]
    assert crc == zlib.crc32(body)
    first = cper(0x1122_3344_5566_7788, 200)
    assert struct.unpack_from("<QII", body, 0) == (0x1122_3344_5566_7788, 200, zlib.crc32(first))
    assert body[16:216] == first
    assert struct.unpack_from("<QII", body, 216) == (3, 128, zlib.crc32(cper(3, 128)))
    assert body[232:] == cper(3, 128)


def test_bytes_that_are_not_a_store_name_the_store_by_default() -> None:
    with pytest.raises(ArmrasError) as e:
        ErstStore.decode(b"junk")
    assert str(e.value) == ("ERST store is not an armras ERST store (no ARMRERST header); "
                            "refusing to use or overwrite it")


def test_a_record_of_just_the_header_is_kept() -> None:
    store = ErstStore()
    assert store.write(cper(3, 128)) == SUCCESS and store.read(3) == cper(3, 128)
    assert store.write(cper(4, 129)[:128]) == FAILED                 # says 129 bytes, has 128


def test_the_temporary_file_is_a_hidden_sibling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Same directory (a rename is atomic only within one file system), named after the store.
    path = tmp_path / "store.erst"
    store = ErstStore.open(path)
    renames: list[tuple[str, str]] = []
    real = os.replace

    def replace(src: str, dst: str) -> None:
        renames.append((str(src), str(dst)))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert store.write(cper(1)) == SUCCESS
    ((src, dst),) = renames
    assert dst == str(path) and Path(src).parent == tmp_path
    assert Path(src).name.startswith(".store.erst.") and Path(src).name.endswith(".tmp")


def test_writes_clears_and_a_failed_save_are_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "armras.ras.erst")
    path = tmp_path / "store.erst"
    store = ErstStore.open(path)
    assert store.write(cper(0xABC, 300)) == SUCCESS
    assert store.clear(0xABC) == SUCCESS

    def crash(*args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    assert store.write(cper(2)) == HARDWARE_NOT_AVAILABLE
    messages = [r.getMessage() for r in caplog.records if r.name == "armras.ras.erst"]
    assert messages[-3:] == [
        "ERST: wrote record 0xabc (300 bytes)",
        "ERST: cleared record 0xabc",
        f"ERST: cannot write {path}: Input/output error (the record is not kept)",
    ]
    assert [r.levelname for r in caplog.records][-3:] == ["INFO", "INFO", "WARNING"]


MAX_FILE_SIZE = 32 + 1024 * (16 + 65536)      # header + the largest store: 1024 records of 64 KiB


def _message(call) -> str:                     # type: ignore[no-untyped-def]
    with pytest.raises(ArmrasError) as e:
        call()
    return str(e.value)


def test_reading_a_store_file_refuses_what_is_not_one(tmp_path: Path) -> None:
    missing = tmp_path / "missing.erst"
    assert _message(lambda: read_store_file(missing)) == f"ERST store {missing} does not exist"
    assert read_store_file(missing, missing_ok=True) == b""
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    below = plain / "store.erst"                                  # a path through a regular file
    assert _message(lambda: read_store_file(below)) == f"cannot read ERST store {below}: Not a directory"
    assert _message(lambda: read_store_file(tmp_path)) == f"ERST store {tmp_path} is a directory"
    assert _message(lambda: read_store_file(Path("/dev/null"))) == "ERST store /dev/null is not a regular file"


def test_reading_stops_at_the_largest_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exact = tmp_path / "exact.erst"
    with open(exact, "wb") as f:
        f.truncate(MAX_FILE_SIZE)                                 # sparse
    assert len(read_store_file(exact)) == MAX_FILE_SIZE
    over = tmp_path / "over.erst"
    with open(over, "wb") as f:
        f.truncate(MAX_FILE_SIZE + 1)
    assert _message(lambda: read_store_file(over)) == (
        f"{over} ({MAX_FILE_SIZE + 1} bytes) is larger than any armras ERST store; refusing to use it")
    # A file that grows after it was measured is read no further than one byte past the limit,
    # which is then refused as corrupt.
    real_stat = os.stat
    monkeypatch.setattr(erst.os, "stat", lambda p: real_stat(exact))
    with open(over, "wb") as f:
        f.truncate(MAX_FILE_SIZE + 5)
    assert len(read_store_file(over)) == MAX_FILE_SIZE + 1


def test_an_unreadable_store_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "store.erst"
    path.write_bytes(b"x")
    real_open = open

    def refuse(file, *args, **kwargs):                            # type: ignore[no-untyped-def]
        if Path(file) == path:
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refuse)
    assert _message(lambda: read_store_file(path)) == f"cannot read ERST store {path}: Permission denied"


@pytest.mark.parametrize("record_size, capacity", [(4096, 1), (65536, 1024), (8192, 64), (16384, 2)])
def test_geometry_at_the_edges_is_accepted(record_size: int, capacity: int) -> None:
    store = ErstStore(record_size=record_size, capacity=capacity)
    assert (store.record_size, store.capacity) == (record_size, capacity)


@pytest.mark.parametrize("record_size, capacity, why", [
    (2048, 64, "record size 2048 is not a power of two in 4096..65536"),
    (131072, 64, "record size 131072 is not a power of two in 4096..65536"),
    (12288, 64, "record size 12288 is not a power of two in 4096..65536"),     # 3 x 4 KiB
    (4097, 64, "record size 4097 is not a power of two in 4096..65536"),
    (8192, 0, "capacity 0 is not 1..1024 records"),
    (8192, 1025, "capacity 1025 is not 1..1024 records"),
    (8192, -1, "capacity -1 is not 1..1024 records"),
])
def test_geometry_refusals_name_the_store(tmp_path: Path, record_size: int, capacity: int, why: str) -> None:
    assert _message(lambda: ErstStore(record_size=record_size, capacity=capacity)) == f"ERST store: {why}"
    path = tmp_path / "s.erst"
    assert _message(lambda: ErstStore(path, record_size=record_size, capacity=capacity)) == f"{path}: {why}"
    # ... and a file whose header says so is refused naming the file.
    header = struct.pack("<8sIIIIII", b"ARMRERST", 1, record_size, capacity & 0xFFFF_FFFF, 0, zlib.crc32(b""), 0)
    path.write_bytes(header)
    expected = why.replace("capacity -1", "capacity 4294967295")
    assert _message(lambda: ErstStore.open(path)) == f"{path}: {expected}"


def test_opening_logs_what_it_found(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "armras.ras.erst")
    path = tmp_path / "s.erst"
    ErstStore.open(path, capacity=7).write(cper(1))
    ErstStore.open(path)
    messages = [r.getMessage() for r in caplog.records if r.name == "armras.ras.erst"]
    assert messages == [f"ERST: new store {path} (7 records of 8192 bytes)", "ERST: wrote record 0x1 (256 bytes)",
                        f"ERST: {path} holds 1 record(s)"]


def _store(body: bytes, count: int) -> bytes:
    """A store file around `body` (records as the caller laid them out), with a sound header CRC."""
    return struct.pack("<8sIIIIII", b"ARMRERST", 1, 8192, 64, count, zlib.crc32(body), 0) + body


def _entry(record_id: int, data: bytes, length: int | None = None, crc: int | None = None) -> bytes:
    return struct.pack("<QII", record_id, len(data) if length is None else length,
                       zlib.crc32(data) if crc is None else crc) + data


@pytest.mark.parametrize("body, count, why", [
    (b"\0" * 10, 1, "truncated record header"),
    (_entry(5, b""), 1, "bad record 0x5"),                                     # header only: length 0
    (_entry(5, cper(5, 200)[:150], length=200, crc=zlib.crc32(cper(5, 200)[:150])), 1, "bad record 0x5"),
    (_entry(5, cper(5, 127)[:127]), 1, "bad record 0x5"),                      # shorter than a CPER header
    (_entry(5, cper(5, 8193)), 1, "bad record 0x5"),                           # longer than the record size
    (_entry(5, cper(5), crc=zlib.crc32(cper(5)) ^ 1), 1, "bad record 0x5"),    # its own CRC is wrong
    (_entry(0, cper(0)), 1, "bad record 0x0"),                                 # ids with a meaning of their own
    (_entry(ALL_ONES, cper(ALL_ONES)), 1, "bad record 0xffffffffffffffff"),
    (_entry(5, cper(5)) + _entry(5, cper(5, 300)), 2, "bad record 0x5"),      # the same id twice
    (_entry(5, cper(5)) + b"abc", 1, "3 trailing bytes"),
])
def test_each_damaged_record_is_named(body: bytes, count: int, why: str) -> None:
    assert _message(lambda: ErstStore.decode(_store(body, count), "s.erst")) == f"s.erst: ERST store is corrupt ({why})"


def test_records_at_the_size_limits_decode() -> None:
    body = _entry(5, cper(5, 128)) + _entry(6, cper(6, 8192))
    store = ErstStore.decode(_store(body, 2))
    assert store.ids() == [5, 6] and store.read(5) == cper(5, 128) and store.read(6) == cper(6, 8192)
