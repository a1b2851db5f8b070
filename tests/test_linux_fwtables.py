"""What Linux gets from the firmware tables and UEFI runtime services, on 6.1 and 6.12.

- SMBIOS: drivers/firmware/dmi_scan.c prints "SMBIOS 3.0.0 present." and
  "DMI: <sys_vendor> <product_name>, BIOS <version> <date>"; /init's fwtest mode cats
  /sys/class/dmi/id/*.
- GetTime: drivers/rtc/rtc-efi.c registers as rtc0 and hctosys sets the system clock
  from it: under --deterministic that is the PL031's epoch, 2024-01-01T00:00:00 UTC.
  SetTime: fwtest sets /dev/rtc0 (RTC_SET_TIME) and reads it back (RTC_RD_TIME).
- Variables: "Registered efivars operations" (efisubsys_init, only with GetVariable and
  GetNextVariableName), and efivar_ssdt=NAME (CONFIG_EFI_CUSTOM_SSDT_OVERLAYS=y in both
  Debian kernels): the kernel walks the store with GetNextVariableName, reads the
  variable with GetVariable through its own virtual addresses, and loads it as an ACPI
  SSDT ("efi: loading SSDT from variable NAME-GUID", then the table's "ACPI: SSDT" line).
"""
from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import require_tool, run_linux as _run
from test_smp import initramfs  # noqa: F401  (fixture)
from test_linux import in_order

pytestmark = pytest.mark.kernel

VENDOR_GUID = "3b6a9d1e-5b7c-4c3a-9a63-6f1d6c1f0a01"
SSDT_DSL = """DefinitionBlock ("", "SSDT", 2, "ARMRAS", "EFIVSSDT", 1)
{
    Scope (\\_SB)
    {
        Name (AVAR, 0x2A)
    }
}
"""
SET_TIME = 1900000000          # 2030-03-17T17:46:40 UTC
DATA = Path(__file__).parent / "data"


def _ssdt(tmp_path: Path) -> bytes:
    iasl = require_tool("iasl", "apt-get install acpica-tools")
    (tmp_path / "ssdt.asl").write_text(SSDT_DSL)
    subprocess.run([iasl, "ssdt.asl"], cwd=tmp_path, capture_output=True, check=True)
    return (tmp_path / "ssdt.aml").read_bytes()


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_dmi_rtc_and_variables(series: str, initramfs: Path, tmp_path: Path) -> None:  # noqa: F811
    store = tmp_path / "vars.json"
    store.write_text(json.dumps({"format": "armras-efivars", "version": 1, "variables": [
        {"guid": VENDOR_GUID, "name": "ARMRASSSDT", "attributes": 7,
         "data": base64.b64encode(_ssdt(tmp_path)).decode()}]}))
    before = store.read_text()
    proc, out = _run(series, initramfs, tmp_path, "--deterministic", "--efivars", str(store), "--append",
                     f"console=ttyAMA0 efivar_ssdt=ARMRASSSDT fwtest fwtest_settime={SET_TIME}")
    assert proc.returncode == 0, proc.stderr + out[-3000:]
    in_order(out, [
        r"efi: EFI v2\.70? by armras",           # 6.12 prints the revision as 2.7
        r"efi: .*SMBIOS 3\.0=0x",
        r"ACPI: DBG2 0x",
        r"SMBIOS 3\.0\.0 present\.",
        r"DMI: armras armras RAS virtual platform, BIOS 1\.0 01/01/2024",
        r"Registered efivars operations",
        rf"efi: loading SSDT from variable ARMRASSSDT-{VENDOR_GUID}",
        r"ACPI: SSDT 0x[0-9A-F]+ 000032 \(v02 ARMRAS EFIVSSDT 00000001 INTL",
        r"rtc-efi rtc-efi\.0: registered as rtc0",
        r"rtc-efi rtc-efi\.0: setting system clock to 2024-01-01T00:00:0\d UTC \(17040672\d\d\)",
        r"INIT-OK",
        r"FWTEST dmi sys_vendor=armras$",
        r"FWTEST dmi product_name=armras RAS virtual platform$",
        r"FWTEST dmi product_version=1\.0$",
        r"FWTEST dmi bios_vendor=armras$",
        r"FWTEST dmi bios_version=1\.0$",
        r"FWTEST dmi bios_date=01/01/2024$",
        r"FWTEST dmi bios_release=1\.0$",
        r"FWTEST rtc0 name=rtc-efi rtc-efi\.0$",
        r"FWTEST time=17040672\d\d$",
        rf"FWTEST rtc set={SET_TIME}$",
        r"FWTEST rtc read=2030-03-17T17:46:4\d$",
        r"reboot: Power down",
    ])
    assert "FWTEST ERROR" not in out and "failed to load table" not in out
    if series == "6.12":
        assert "DMI: Memory slots populated: 1/1" in out       # from the type 17 structure
    assert store.read_text() == before                          # read, never rewritten by a read


def _warnings(console: str) -> list[str]:
    """The kernel lines of a loglevel=5 boot (warning and above), timestamps and addresses masked."""
    lines = []
    for line in console.splitlines():
        m = re.match(r"\[\s*\d+\.\d+\] (.*)", line)
        if m and "reboot: Power down" not in m.group(1):
            lines.append(re.sub(r"0x[0-9a-f]+", "0x…", m.group(1)))
    return lines


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_no_warning_that_qemu_lacks(series: str, initramfs: Path, tmp_path: Path) -> None:  # noqa: F811
    """loglevel=5 prints only KERN_WARNING and worse: every such line of our boot must be in
    QEMU 7.2 + EDK2's boot of the same kernel and initramfs (tests/data, captured with the
    command in its first line). --deterministic: guest time from instruction counts, so a
    loaded host cannot add timing warnings ("hrtimer: interrupt took N ns")."""
    reference = (DATA / f"qemu-7.2-linux-{series}-warnings.log").read_text()
    proc, out = _run(series, initramfs, tmp_path, "--deterministic", "--append", "console=ttyAMA0 loglevel=5")
    assert proc.returncode == 0, proc.stderr + out[-3000:]
    assert "INIT-OK" in out
    extra = [line for line in _warnings(out) if line not in _warnings(reference)]
    assert extra == [], out


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_kaslr_seeded_and_reproducible_under_deterministic(series: str, initramfs: Path,  # noqa: F811
                                                           tmp_path: Path) -> None:
    """EFI_RNG_PROTOCOL seeds KASLR ("KASLR enabled", no "KASLR disabled due to lack of seed");
    under --deterministic the seed is fixed, so the offset the panic notifier prints is the
    same in two runs (and the crash report symbolizes the PC, see test_kallsyms)."""
    offsets = []
    for run in range(2):
        (tmp_path / str(run)).mkdir()
        proc, out = _run(series, initramfs, tmp_path / str(run), "--deterministic",
                         "--append", "console=ttyAMA0 rdinit=/nope")
        assert proc.returncode == 126, proc.stderr + out[-3000:]
        assert "EFI stub: EFI_RNG_PROTOCOL unavailable" not in out
        assert "KASLR disabled" not in out and "KASLR enabled" in out
        m = re.search(r"Kernel Offset: (0x[0-9a-f]+) from 0x[0-9a-f]+", out)
        assert m, out[-3000:]
        offsets.append(int(m[1], 16))
        assert re.search(r"^--- CPU at EL1, PC 0x[0-9a-f]+ <\w", proc.stdout + proc.stderr, re.MULTILINE)
    assert offsets[0] == offsets[1] != 0
