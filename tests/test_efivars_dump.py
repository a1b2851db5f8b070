"""`armras efivars FILE`: a store's variables, and Linux efi-pstore dumps inflated.

The dump variables are built here as Linux's efi-pstore writes them
(drivers/firmware/efi/efi-pstore.c): name "dump-type%u-%u-%d-%lld-%c" (type 0 = dmesg,
part, count, seconds, C = compressed / D = plain), vendor LINUX_EFI_CRASH_GUID,
attributes NV|BS|RT, data a raw deflate stream (zlib with -MAX_WBITS) or plain text.
"""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

CRASH_GUID = "cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0"        # LINUX_EFI_CRASH_GUID
VENDOR = "3b6a9d1e-5b7c-4c3a-9a63-6f1d6c1f0a01"
PANIC = "<0>[    2.060730] Kernel panic - not syncing: sysrq triggered crash"


def _deflate(text: str) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(text.encode()) + c.flush()


def _store(path: Path, variables: list[tuple[str, str, int, bytes]]) -> Path:
    path.write_text(json.dumps({"format": "armras-efivars", "version": 1, "variables": [
        {"guid": g, "name": n, "attributes": a, "data": base64.b64encode(d).decode()} for g, n, a, d in variables]}))
    return path


def _efivars(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armras", "efivars", *args], capture_output=True, text=True,
                          timeout=60)


def test_lists_variables_and_inflates_efi_pstore_dumps(tmp_path: Path) -> None:
    dmesg = "<6>[    2.060304] sysrq: Trigger a crash\n" + PANIC + "\n<4>[    2.065777] Call trace:\n"
    path = _store(tmp_path / "vars.json", [
        (CRASH_GUID, "dump-type0-1-1-1795587335-C", 7, _deflate(dmesg)),
        (CRASH_GUID, "dump-type0-2-1-1795587335-D", 7, b"<6>[    1.0] plain\n"),
        (CRASH_GUID, "dump-type0-3-1-1795587335-C", 7, b"not deflate at all"),
        (VENDOR, "Text", 7, b"armras efitest 1"),
        (VENDOR, "Bin\x1b[2J", 3, bytes(range(100))),
    ])
    proc = _efivars(str(path), "--lines", "2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{path}: 5 variable(s), ") and lines[0].endswith(" of 65536 bytes used")
    assert lines[1] == (f"{CRASH_GUID} dump-type0-1-1-1795587335-C: NV|BS|RT, {len(_deflate(dmesg))} bytes: "
                        "Linux efi-pstore dmesg part 1, dump 1, written 2026-11-25T06:15:35+00:00, deflate")
    assert lines[2:4] == [f"    | {PANIC}", "    | <4>[    2.065777] Call trace:"]     # --lines 2: the last two
    assert lines[4].endswith("part 2, dump 1, written 2026-11-25T06:15:35+00:00, plain text")
    assert lines[5] == "    | <6>[    1.0] plain"
    assert lines[7].startswith("    | <compressed dmesg that does not inflate: ")
    assert lines[8] == f"{VENDOR} Text: NV|BS|RT, 16 bytes: 'armras efitest 1'"
    # A name with a terminal escape is shown escaped; binary data as hex, cut at 64 bytes.
    assert lines[9].startswith(f"{VENDOR} Bin\\x1b[2J: NV|BS, 100 bytes: 00 01 02 03")
    assert lines[9].endswith("3e 3f ...")


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "does not exist"),
    (lambda p: (p.mkdir(), p)[1], "not a regular file"),
    (lambda p: (p.write_text("my notes\n"), p)[1], "not an armras variable store"),
])
def test_bad_files_are_one_line_errors(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path / "vars.json")
    before = path.read_text() if path.is_file() else None
    proc = _efivars(str(path))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and message in lines[0], proc.stderr
    if before is not None:
        assert path.read_text() == before


@pytest.mark.parametrize("lines", ["0", "-1", "nan", "1e9", "x"])
def test_bad_lines_is_a_usage_error(tmp_path: Path, lines: str) -> None:
    path = _store(tmp_path / "vars.json", [])
    proc = _efivars(str(path), "--lines", lines)
    assert proc.returncode == 2 and "--lines" in proc.stderr and "Traceback" not in proc.stderr


def test_a_reader_that_goes_away_ends_the_listing_quietly(tmp_path: Path) -> None:
    # `armras efivars FILE | head -1`: no traceback when the pipe closes early.
    path = _store(tmp_path / "vars.json", [(VENDOR, f"Var{i:03d}", 7, b"x" * 200) for i in range(200)])
    proc = subprocess.run(f"'{sys.executable}' -m armras efivars '{path}' | head -1", shell=True,
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith(f"{path}: 200 variable(s), ")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
