"""A fatal error ends a boot, the kernel resets the board, and the next boot's BERT has it.

Linux: ghes.c panics on a fatal record ("Kernel panic - not syncing: GHES: Fatal hardware
error"), `panic=1` makes it reset after a second (PSCI SYSTEM_RESET), and at the next boot
drivers/acpi/apei/bert.c prints "BERT: Error records from previous boot:", the record
through cper_estatus_print, and "BERT: Total records found: 1".
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_linux as _run
from test_smp import initramfs  # noqa: F401  (fixture)
from test_linux import in_order

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_fatal_error_reboot_and_bert(series: str, initramfs: Path, tmp_path: Path) -> None:  # noqa: F811
    proc, out = _run(series, initramfs, tmp_path, "--append", "console=ttyAMA0 panic=1",
                     "--inject", "gpio:pa=0x48000000,severity=fatal,on=INIT-OK")
    assert proc.returncode == 0, proc.stderr + out[-3000:]
    assert "warm reset (PSCI SYSTEM_RESET): boot 2, 1 record(s) in the BERT" in proc.stderr
    in_order(out, [
        r"ACPI: BERT 0x",
        r"INIT-OK",
        r"Hardware error from APEI Generic Hardware Error Source: 1$",
        r"Kernel panic - not syncing: GHES: Fatal hardware error",
        r"Rebooting in 1 seconds",
        r"Booting Linux on physical CPU",                    # the second boot
        r"BERT: Error records from previous boot:",
        r"\[Hardware Error\]: event severity: fatal",
        r"section_type: memory error",
        r"physical_address: 0x0000000048000000",
        r"BERT: Total records found: 1",
        r"INIT-OK",
        r"reboot: Power down",
    ])
    assert out.count("Booting Linux on physical CPU") == 2


def test_bert_record_for_the_first_boot(initramfs: Path, tmp_path: Path) -> None:  # noqa: F811
    proc, out = _run("6.1", initramfs, tmp_path, "--append", "console=ttyAMA0",
                     "--inject", "bert:type=cache,cpu=0,pa=0x48001000,va=0xffff0000,severity=fatal")
    assert proc.returncode == 0, proc.stderr + out[-3000:]
    in_order(out, [
        r"BERT: Error records from previous boot:",
        r"section_type: ARM processor error",
        r"Multiprocessor Affinity Register \(MPIDR\): 0x0000000080000000",
        r"physical fault address: 0x0000000048001000",
        r"BERT: Total records found: 1",
        r"reboot: Power down",
    ])
    assert out.count("Booting Linux on physical CPU") == 1
