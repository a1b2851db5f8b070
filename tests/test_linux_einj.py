"""Debian's own einj.ko injects memory errors through the board's EINJ table, from /init.

The initramfs carries einj.ko from the kernel's own Debian package (armras.guests.modules,
what `python -m armras.guests.initramfs --kernel K --module einj` does); /init's
`einjtest=uc|ce|fatal` loads it, lists available_error_type and writes error_type,
param1/param2 and error_inject for a page of its own (guest_images/linux/init.c).
Expected lines are Linux's: einj.c "EINJ: Error INJection is initialized." and its
available_error_type table ("0x%08x\\t%s"), ghes.c/cper.c's report, memory-failure.c's
"Memory failure: %#lx: recovery action for %s: %s", ghes.c's "GHES: Fatal hardware error".
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import debian_kernel, in_order, module_initramfs

pytestmark = pytest.mark.kernel

AVAILABLE = [
    r"EINJTEST available: 0x00000008\tMemory Correctable$",
    r"EINJTEST available: 0x00000010\tMemory Uncorrectable non-fatal$",
    r"EINJTEST available: 0x00000020\tMemory Uncorrectable fatal$",
]


@pytest.fixture(scope="module")
def einj_initramfs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An initramfs per kernel series: /init and that kernel's einj.ko (with modules.dep)."""
    return module_initramfs(tmp_path_factory.mktemp("einj"), ["einj"])


def _boot(series: str, initrd: Path, mode: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    console = tmp_path / "console.log"
    proc = subprocess.run(
        [sys.executable, "-m", "armras", "run", "--kernel", str(debian_kernel(series)), "--initrd", str(initrd),
         "--append", f"console=ttyAMA0 einjtest={mode}", "--timeout", "300", "--console", str(console)],
        capture_output=True, text=True, timeout=400)
    return proc, console.read_text(errors="replace").replace("\r\n", "\n")


def _einj_loaded(out: str) -> list[str]:
    assert "EINJ: " not in out.replace("EINJ: Error INJection is initialized.", ""), \
        [ln for ln in out.splitlines() if "EINJ: " in ln]          # no "EINJ: ..." failure
    return [r"ACPI: EINJ 0x", r"EINJ: Error INJection is initialized\.",
            r"EINJTEST loaded /lib/modules/[^/]+/kernel/drivers/acpi/apei/einj\.ko$", *AVAILABLE]


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_einj_uncorrectable_poisons_the_page_and_linux_recovers(series: str, einj_initramfs: dict[str, Path],
                                                                tmp_path: Path) -> None:
    proc, out = _boot(series, einj_initramfs[series], "uc", tmp_path)
    assert proc.returncode == 0, proc.stderr + out[-3000:]
    m = in_order(out, [
        *_einj_loaded(out),
        r"EINJTEST inject type=0x10 PADDR=(0x[0-9a-f]+)",
        r"EINJTEST error_inject ok",
        r"Hardware error from APEI Generic Hardware Error Source: 0$",      # the SEA source
        r"event severity: recoverable",
        r"section_type: memory error",
        r"physical_address: (0x[0-9a-f]+)",
        r"Memory failure: (0x[0-9a-f]+): recovery action for dirty LRU page: Recovered",
        r"EINJTEST SIGBUS si_code=4 \(BUS_MCEERR_AR=4\)",
        r"HardwareCorrupted:\s+4 kB",
        r"EINJTEST DONE",
    ])
    page = int(m[-10].group(1), 16) & ~0xFFF                 # the page /init asked for
    assert int(m[-5].group(1), 16) == page                    # the CPER's physical_address
    assert int(m[-4].group(1), 16) == page >> 12              # memory_failure()'s pfn
    assert "Kernel panic" not in out and "Oops" not in out


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_einj_correctable_is_a_gpio_notified_corrected_record(series: str, einj_initramfs: dict[str, Path],
                                                              tmp_path: Path) -> None:
    proc, out = _boot(series, einj_initramfs[series], "ce", tmp_path)
    assert proc.returncode == 0, proc.stderr + out[-3000:]
    m = in_order(out, [
        *_einj_loaded(out),
        r"EINJTEST inject type=0x8 PADDR=(0x[0-9a-f]+)",
        r"Hardware error from APEI Generic Hardware Error Source: 1$",      # the GPIO source
        r"It has been corrected by h/w and requires no further action",
        r"event severity: corrected",
        r"section_type: memory error",
        r"physical_address: (0x[0-9a-f]+)",
        r"EINJTEST DONE",
    ])
    assert int(m[-2].group(1), 16) == int(m[-7].group(1), 16)
    assert "EINJTEST error_inject ok" in out
    assert "Memory failure" not in out and "Kernel panic" not in out


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_einj_fatal_panics_the_kernel(series: str, einj_initramfs: dict[str, Path], tmp_path: Path) -> None:
    proc, out = _boot(series, einj_initramfs[series], "fatal", tmp_path)
    assert proc.returncode == 126, proc.stderr + out[-3000:]
    assert "Linux panicked: GHES: Fatal hardware error" in proc.stderr
    in_order(out, [
        *_einj_loaded(out),
        r"EINJTEST inject type=0x20 PADDR=0x[0-9a-f]+",
        r"Hardware error from APEI Generic Hardware Error Source: 1$",
        r"event severity: fatal",
        r"section_type: memory error",
        r"Kernel panic - not syncing: GHES: Fatal hardware error",
    ])
    # Whether /init's write to error_inject returns (and it prints "error_inject ok")
    # before the panic is up to the kernel: the GED's handler is a threaded IRQ, so the
    # GHES work may run after the writer is scheduled again, as on hardware.


def test_modules_come_from_the_kernels_own_package() -> None:
    from armras.guests.modules import module_files
    from elftools.elf.elffile import ELFFile
    import io

    for series, release in (("6.1", r"6\.1\.\d+-\d+-arm64"), ("6.12", r"6\.12\.\d+\+deb\d+-arm64")):
        debian_kernel(series)
        files = module_files(series, ["einj"])
        assert len(files) == 2
        ko = next(p for p in files if p.endswith(".ko"))
        assert re.fullmatch(rf"/lib/modules/{release}/kernel/drivers/acpi/apei/einj\.ko", ko)
        dep = ko.rsplit("/kernel/", 1)[0] + "/modules.dep"
        assert files[dep] == b"kernel/drivers/acpi/apei/einj.ko:\n"     # einj depends on nothing
        elf = ELFFile(io.BytesIO(files[ko]))                               # 6.12's .ko.xz decompressed
        assert elf["e_type"] == "ET_REL" and elf["e_machine"] == "EM_AARCH64"
        modinfo = elf.get_section_by_name(".modinfo").data().split(b"\0")
        assert b"name=einj" in modinfo
        assert any(v.startswith(b"vermagic=" + ko.split("/")[3].encode() + b" ") for v in modinfo)


def test_modules_with_dependencies_and_bad_names(tmp_path: Path) -> None:
    from armras.errors import ArmrasError
    from armras.guests.modules import module_files

    debian_kernel("6.12")
    files = module_files("6.12", ["vfat"])       # vfat depends on fat (modinfo depends=fat)
    dep = next(p for p in files if p.endswith("modules.dep"))
    lines = files[dep].decode().splitlines()
    assert "kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko" in lines
    assert "kernel/fs/fat/fat.ko:" in lines
    with pytest.raises(ArmrasError, match="no module no_such_module"):
        module_files("6.12", ["no-such-module"])
    init = tmp_path / "init"
    init.write_bytes(b"#!/bin/sh\n")
    proc = subprocess.run([sys.executable, "-m", "armras.guests.initramfs", str(init), "-o", str(tmp_path / "x"),
                           "--module", "einj"], capture_output=True, text=True)
    assert proc.returncode != 0 and "--module needs --kernel" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "armras.guests.initramfs", str(init), "-o", str(tmp_path / "x"),
                           "--kernel", "6.12", "--module", "no-such-module"], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "no module no_such_module" in proc.stderr
