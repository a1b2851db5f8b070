"""The ERST record store: ids, bounds, the host file, refusal of foreign or corrupt files,
and atomic writes (a crash mid-write leaves the previous store).

Status codes are ACPI 6.4 Table 18.30 ("Command Status Definitions"), written here as the
spec's numbers; a CPER record's length is the u32 at byte 20 and its id the u64 at byte 96
(UEFI 2.10 Table N-1).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from armras.errors import ArmrasError
from armras.ras.erst import ErstStore

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


@pytest.mark.parametrize("damage", ["flip", "truncate", "append", "version"])
def test_corrupt_file_is_refused_and_kept(tmp_path: Path, damage: str) -> None:
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
    assert "\n" not in str(e.value)
    assert path.read_bytes() == bytes(data)


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
