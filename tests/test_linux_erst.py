"""Linux's pstore on the board's ERST: a panic's dmesg survives a warm reset and two runs.

drivers/acpi/apei/erst.c prints "ERST: Error Record Serialization Table (ERST) support is
initialized." and registers with pstore ("pstore: Registered erst as persistent store
backend"). /init's pstoretest mode lists /sys/fs/pstore and, with pstore_crash, panics the
kernel through /proc/sysrq-trigger ("Kernel panic - not syncing: sysrq triggered crash");
pstore's kmsg dumper writes the dmesg as CPER records through the ERST, panic=1 resets, and
the next boot (and the next run, with the same --erst FILE) lists dmesg-erst-<record id>.
`armras erst FILE` decodes the records on the host: creator CPER_CREATOR_PSTORE, section
type CPER_SECTION_TYPE_DMESG_Z (both kernels compress with deflate), the panic text.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import debian_kernel, in_order
from test_smp import initramfs  # noqa: F401  (fixture)

pytestmark = pytest.mark.kernel

PANIC = r"Kernel panic - not syncing: sysrq triggered crash"
CREATOR_PSTORE = "75a574e3-5052-4b29-8a8e-be2c6490b89d"          # Linux erst.c CPER_CREATOR_PSTORE
SECTION_DMESG_Z = "4f118707-04dd-4055-b5dd-956d34ddfac6"         # CPER_SECTION_TYPE_DMESG_Z


def _armras(*args: str, timeout: int = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armras", *args], capture_output=True, text=True, timeout=timeout)


def _run(series: str, initrd: Path, console: Path, store: Path, append: str, *args: str) -> tuple[
        subprocess.CompletedProcess[str], str]:
    proc = _armras("run", "--kernel", str(debian_kernel(series)), "--initrd", str(initrd), "--timeout", "300",
                   "--console", str(console), "--erst", str(store), "--append", append, *args)
    return proc, console.read_text(errors="replace").replace("\r\n", "\n")


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_panic_dmesg_in_pstore_after_warm_reset_and_next_run(series: str, initramfs: Path,  # noqa: F811
                                                             tmp_path: Path) -> None:
    store = tmp_path / "pstore.erst"
    # Run 1: the first boot panics, the second finds the panic's dmesg in pstore.
    proc, out = _run(series, initramfs, tmp_path / "run1.log", store,
                     "console=ttyAMA0 panic=1 pstoretest pstore_crash", "--max-reboots", "1")
    assert proc.returncode == 0, proc.stderr + out[-3000:]
    assert "warm reset (PSCI SYSTEM_RESET): boot 2" in proc.stderr
    matches = in_order(out, [
        r"ACPI: ERST 0x",
        r"ERST: Error Record Serialization Table \(ERST\) support is initialized\.",
        r"pstore: Registered erst as persistent store backend",
        r"^PSTORE files=0 dmesg=0$",
        r"^PSTORE crash$",
        PANIC,
        r"Rebooting in 1 seconds",
        r"Booting Linux on physical CPU",                           # the second boot
        r"pstore: Registered erst as persistent store backend",
        r"^PSTORE file=(dmesg-erst-\d+) size=[1-9]\d*$",
        r"^PSTORE (dmesg-erst-\d+): <0>\[ *[\d.]+\] " + PANIC + "$",
        r"^PSTORE files=\d+ dmesg=[1-9]\d*$",
        r"reboot: Power down",
    ])
    assert out.count("Booting Linux on physical CPU") == 2
    assert "INIT ERROR" not in out and "PSTORE ERROR" not in out
    panic_file = matches[10].group(1)
    panic_id = int(panic_file.rsplit("-", 1)[1])

    # Run 2, same file: the first run's record is there; nothing panics.
    proc, out = _run(series, initramfs, tmp_path / "run2.log", store, "console=ttyAMA0 panic=1 pstoretest")
    assert proc.returncode == 0, proc.stderr + out[-3000:]
    in_order(out, [
        r"pstore: Registered erst as persistent store backend",
        rf"^PSTORE file={panic_file} size=[1-9]\d*$",
        rf"^PSTORE {panic_file}: <0>\[ *[\d.]+\] {PANIC}$",
        r"reboot: Power down",
    ])
    assert out.count("Booting Linux on physical CPU") == 1 and PANIC not in out.split("PSTORE file=")[0]

    # The host decodes the same record: its id is the pstore file's, its text the panic.
    listing = _armras("erst", str(store))
    assert listing.returncode == 0, listing.stderr
    record = re.search(rf"^record {panic_id:#018x}: \d+ bytes, severity fatal, 1 section\(s\)\n"
                       rf"(?:  .*\n|    \|.*\n)*", listing.stdout + "\n", re.MULTILINE)
    assert record, listing.stdout[:3000]
    text = record.group(0)
    assert f"creator: {CREATOR_PSTORE} (Linux pstore)" in text
    assert f"section 0: {SECTION_DMESG_Z} (pstore dmesg (deflate))" in text
    assert re.search(rf"^    \| <0>\[ *[\d.]+\] {PANIC}$", text, re.MULTILINE), text[:3000]
