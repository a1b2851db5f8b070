"""`armras erst FILE`, `armras run --erst FILE` and the scenario key `erst`: records decoded
on the host, bad files refused with one line and left as they were.

The pstore record is built as Linux's erst_writer builds one (drivers/acpi/apei/erst.c):
CPER record header (UEFI 2.10 Table N-1: "CPER", revision, 0xFFFFFFFF, section count 1,
severity fatal = 1, validation bits = timestamp valid (bit 1), record length, timestamp,
creator CPER_CREATOR_PSTORE, notification CPER_NOTIFY_MCE, record id), one section
descriptor (Table N-5) of type CPER_SECTION_TYPE_DMESG or _DMESG_Z at offset 200, then the
dmesg text (raw deflate for _Z, as the kernel's zlib_deflate with -MAX_WBITS).
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import pytest

from conftest import REPO
from armras.ras.erst import ErstStore

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
CREATOR_PSTORE = uuid.UUID("75a574e3-5052-4b29-8a8e-be2c6490b89d")
NOTIFY_MCE = uuid.UUID("e8f56ffe-919c-4cc5-ba88-65abe14913bb")
DMESG = uuid.UUID("c197e04e-d545-4a70-9c17-a5549419eb12")
DMESG_Z = uuid.UUID("4f118707-04dd-4055-b5dd-956d34ddfac6")


def pstore_record(record_id: int, text: bytes, compressed: bool) -> bytes:
    if compressed:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        payload = c.compress(text) + c.flush()
    else:
        payload = text
    length = 128 + 72 + len(payload)
    header = struct.pack("<4sHIHIIIQ16s16s16s16sQIQ12s", b"CPER", 0x0100, 0xFFFF_FFFF, 1, 1, 1 << 1, length,
                         1_700_000_000, bytes(16), bytes(16), CREATOR_PSTORE.bytes_le, NOTIFY_MCE.bytes_le,
                         record_id, 0, 0, bytes(12))
    section = struct.pack("<IIHBBI16s16sI20s", 200, len(payload), 0x0100, 0, 0, 1,
                          (DMESG_Z if compressed else DMESG).bytes_le, bytes(16), 1, bytes(20))
    return header + section + payload


def armras(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armras", *args], capture_output=True, text=True, timeout=timeout,
                          env=ENV, cwd=REPO)


def test_erst_lists_and_decodes_pstore_records(tmp_path: Path) -> None:
    path = tmp_path / "s.erst"
    store = ErstStore.open(path)
    text = b"Panic#1 Part1\n<0>[    5.3] Kernel panic - not syncing: sysrq triggered crash\n<4>[ 5.4] tail\n"
    assert store.write(pstore_record(0x700000001, text, compressed=True)) == 0
    assert store.write(pstore_record(0x700000002, b"plain \x1b[31mred\n", compressed=False)) == 0
    proc = armras("erst", str(path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "2 record(s) of at most 8192 bytes, capacity 64" in out
    assert "record 0x0000000700000001: " in out and "severity fatal, 1 section(s)" in out
    assert "timestamp: 1700000000" in out
    assert f"creator: {CREATOR_PSTORE} (Linux pstore)" in out
    assert f"notification type: {NOTIFY_MCE} (MCE)" in out
    assert f"section 0: {DMESG_Z} (pstore dmesg (deflate))" in out
    assert "    | <0>[    5.3] Kernel panic - not syncing: sysrq triggered crash\n" in out
    assert f"section 0: {DMESG} (pstore dmesg)" in out
    assert "    | plain \\x1b[31mred" in out and "\x1b" not in out     # a terminal escape made visible
    last = armras("erst", str(path), "--lines", "1").stdout
    assert "    | <4>[ 5.4] tail" in last and "Panic#1" not in last


def test_erst_non_cper_and_broken_deflate_are_described(tmp_path: Path) -> None:
    path = tmp_path / "s.erst"
    store = ErstStore.open(path)
    junk = bytearray(200)
    junk[20:24] = struct.pack("<I", 200)
    junk[96:104] = struct.pack("<Q", 3)
    assert store.write(bytes(junk)) == 0
    broken = bytearray(pstore_record(4, b"x" * 100, compressed=True))
    broken[200:] = b"\xff" * (len(broken) - 200)
    assert store.write(bytes(broken)) == 0
    proc = armras("erst", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "record 0x0000000000000003: 200 bytes, not a CPER record (no CPER signature)" in proc.stdout
    assert "<compressed dmesg that does not inflate" in proc.stdout


@pytest.mark.parametrize("content", [b"not a store\n", b"ARMRERST" + bytes(24)])
def test_erst_refuses_bad_files_with_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.erst"
    path.write_bytes(content)
    for args in (("erst", str(path)), ("run", "--kernel", "debian:6.1", "--erst", str(path))):
        proc = armras(*args)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("armras: error: "), proc.stderr
        assert "Traceback" not in proc.stderr
    assert path.read_bytes() == content


def test_erst_missing_file_is_one_line(tmp_path: Path) -> None:
    proc = armras("erst", str(tmp_path / "absent.erst"))
    assert proc.returncode == 1 and proc.stderr == f"armras: error: ERST store {tmp_path / 'absent.erst'} does not exist\n"
    for bad in ("0", "-1", "nan", "1e9", "99999999999"):
        proc = armras("erst", str(tmp_path / "absent.erst"), "--lines", bad)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_run_refuses_an_erst_file_that_is_an_input(tmp_path: Path, guest_images: Path) -> None:
    image = guest_images / "exc_test.elf"
    before = image.read_bytes()
    proc = armras("run", str(image), "--erst", str(image))
    assert proc.returncode == 1 and "refusing to overwrite an input" in proc.stderr
    assert image.read_bytes() == before


def test_run_creates_the_store_file(tmp_path: Path, guest_images: Path) -> None:
    path = tmp_path / "new.erst"
    proc = armras("run", str(guest_images / "exc_test.elf"), "--deterministic", "--erst", str(path),
                  "--console", str(tmp_path / "c.log"))
    assert proc.returncode == 0, proc.stderr
    assert path.read_bytes()[:8] == b"ARMRERST"
    assert len(ErstStore.open(path)) == 0


def test_scenario_erst_key(tmp_path: Path, guest_images: Path) -> None:
    foreign = tmp_path / "foreign.erst"
    foreign.write_bytes(b"keep me")
    for name, erst, status in (("fresh", "fresh.erst", 0), ("foreign", "foreign.erst", 1)):
        scenario = tmp_path / f"{name}.toml"
        scenario.write_text(f'image = "{guest_images / "exc_test.elf"}"\nerst = "{erst}"\ntimeout = 30\n'
                            f'deterministic = true\n[[step]]\nexit = {status}\n'
                            + ('[[step]]\nexpect = "not an armras ERST store"\n' if status else ""))
        proc = armras("regress", str(scenario), "--log-dir", str(tmp_path / "logs"), timeout=200)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "fresh.erst").read_bytes()[:8] == b"ARMRERST"
    assert foreign.read_bytes() == b"keep me"


def test_scenario_efivars_key(tmp_path: Path, guest_images: Path) -> None:
    # The same contract as `erst`: the file is the scenario's UEFI variable store (relative
    # to the scenario), a foreign file fails the scenario and is left as it was.
    foreign = tmp_path / "foreign.json"
    foreign.write_bytes(b"keep me")
    for name, store, status in (("fresh", "fresh.json", 0), ("foreign", "foreign.json", 1)):
        scenario = tmp_path / f"{name}.toml"
        scenario.write_text(f'image = "{guest_images / "exc_test.elf"}"\nefivars = "{store}"\ntimeout = 30\n'
                            f'deterministic = true\n[[step]]\nexit = {status}\n'
                            + ('[[step]]\nexpect = "not an armras variable store"\n' if status else ""))
        proc = armras("regress", str(scenario), "--log-dir", str(tmp_path / "logs"), timeout=200)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert foreign.read_bytes() == b"keep me"
    assert not (tmp_path / "fresh.json").exists()      # nothing non-volatile was written
