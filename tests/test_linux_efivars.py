"""UEFI variables from Linux: efivarfs and efi-pstore on Debian's own modules, 6.1 and 6.12.

The initramfs carries efivarfs.ko and efi-pstore.ko from the kernel's Debian package
(CONFIG_EFIVAR_FS=m, CONFIG_EFI_VARS_PSTORE=m; `make -C guest_images/linux efivars`).
/init's `efitest=list,write,read,delete` mounts efivarfs and prints each step; `efipstore`
loads efi-pstore.ko before `pstoretest` mounts pstore (guest_images/linux/init.c).

Expected values are Linux's and the UEFI specification's: efivarfs files are
"<Name>-<vendor GUID>" holding the 32-bit attributes then the data; the global variables
(UEFI 2.10 3.3, EFI_GLOBAL_VARIABLE 8be4df61-...) a firmware defines are BS|RT (0x6);
efi-pstore (drivers/firmware/efi/efi-pstore.c) names its variables
"dump-type<type>-<part>-<count>-<seconds>-<C|D>" under LINUX_EFI_CRASH_GUID with
attributes NV|BS|RT, at most efi_pstore.record_size (1024, the minimum and default) bytes
each, and registers as "efi" (6.1) or "efi_pstore" (6.12) ("pstore: Registered %s as
persistent store backend"), the name pstore.backend= selects and dmesg-<name>-<id> shows.
"""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import in_order, module_initramfs, run_linux

pytestmark = pytest.mark.kernel

GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"           # EFI_GLOBAL_VARIABLE (UEFI 2.10 3.3)
CRASH_GUID = "cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0"       # LINUX_EFI_CRASH_GUID (include/linux/efi.h)
TEST_GUID = "a4a3c0f2-8d1e-4b5c-9f60-7e2d1c0b9a81"        # /init's own vendor GUID (init.c EFITEST_GUID)
NV_BS_RT, BS_RT = 0x7, 0x6                                # EFI_VARIABLE_* (UEFI 2.10 8.2.1)
KEPT, SCRATCH = f"ArmrasTest-{TEST_GUID}", f"ArmrasScratch-{TEST_GUID}"
DATA = "armras efitest 1"                                 # what /init writes
PANIC = r"Kernel panic - not syncing: sysrq triggered crash"
BACKEND = {"6.1": "efi", "6.12": "efi_pstore"}            # efi_pstore_info.name in each kernel
EFI_PSTORE_RECORD_SIZE = 1024                              # efi-pstore's record_size (min and default)
EDK2_VARIABLE_STORE_SIZE = 0x10000                         # MdeModulePkg PcdVariableStoreSize (ArmVirtQemu)
DUMP_NAME = re.compile(r"^dump-type0-(\d+)-(\d+)-(\d+)-C$")  # type 0 = PSTORE_TYPE_DMESG, compressed


@pytest.fixture(scope="module")
def efivars_initramfs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An initramfs per kernel series: /init, that kernel's efivarfs.ko and efi-pstore.ko, modules.dep."""
    return module_initramfs(tmp_path_factory.mktemp("efivars"), ["efivarfs", "efi_pstore"])


def _stored(path: Path) -> dict[tuple[str, str], tuple[int, bytes]]:
    """The store file as the host sees it: (GUID, name) -> (attributes, data)."""
    doc = json.loads(path.read_text())
    return {(v["guid"], v["name"]): (v["attributes"], base64.b64decode(v["data"])) for v in doc["variables"]}


def _armras(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armras", *args], capture_output=True, text=True, timeout=60)


def _firmware_listing() -> list[str]:
    # Sorted as /init sorts the file names; sizes are the data UEFI 2.10 3.3 gives each variable:
    # UINT64 OsIndicationsSupported, UINT8 SecureBoot/SetupMode, ASCII "en-US\0" and "eng\0".
    return [rf"^EFITEST var LangCodes-{GLOBAL} attr=0x6 size=4$",
            rf"^EFITEST var OsIndicationsSupported-{GLOBAL} attr=0x6 size=8$",
            rf"^EFITEST var PlatformLangCodes-{GLOBAL} attr=0x6 size=6$",
            rf"^EFITEST var SecureBoot-{GLOBAL} attr=0x6 size=1$",
            rf"^EFITEST var SetupMode-{GLOBAL} attr=0x6 size=1$"]


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_efivarfs_lists_creates_reads_deletes_and_the_next_run_reads_back(
        series: str, efivars_initramfs: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "vars.json"
    run1 = tmp_path / "run1"
    run1.mkdir()
    proc, out = run_linux(series, efivars_initramfs[series], run1, "--efivars", str(store),
                          "--append", "console=ttyAMA0 efitest=list,write,read,delete,list")
    assert proc.returncode == 0, proc.stderr + out[-3000:]
    in_order(out, [
        r"secureboot: Secure boot disabled",                      # the EFI stub read SecureBoot = 0
        r"Registered efivars operations",
        r"^EFITEST loaded /lib/modules/[^/]+/kernel/fs/efivarfs/efivarfs\.ko$",
        r"^EFITEST mounted efivarfs$",
        *_firmware_listing(),
        r"^EFITEST vars=5$",
        rf"^EFITEST wrote {KEPT} attr=0x7 size=16$",
        rf"^EFITEST wrote {SCRATCH} attr=0x7 size=16$",
        rf"^EFITEST read {KEPT} attr=0x7 data={DATA}$",
        rf"^EFITEST read {SCRATCH} attr=0x7 data={DATA}$",
        rf"^EFITEST chattr -i {SCRATCH}$",                        # efivarfs: unknown variables are immutable
        rf"^EFITEST deleted {SCRATCH}$",
        rf"^EFITEST gone {SCRATCH}$",
        rf"^EFITEST var {KEPT} attr=0x7 size=16$",
        *_firmware_listing(),
        r"^EFITEST vars=6$",
        r"^EFITEST DONE$",
        r"reboot: Power down",
    ])
    assert "EFITEST ERROR" not in out and "INIT ERROR" not in out
    # The host's file: only the kept non-volatile variable (not the deleted one, not the
    # firmware's volatile ones), with Linux's attributes and bytes.
    assert _stored(store) == {(TEST_GUID, "ArmrasTest"): (NV_BS_RT, DATA.encode())}
    listing = _armras("efivars", str(store))
    assert listing.returncode == 0, listing.stderr
    assert f"{TEST_GUID} ArmrasTest: NV|BS|RT, 16 bytes: '{DATA}'" in listing.stdout.splitlines()

    # Run 2 from the same file: the variable is there, the deleted one is not.
    run2 = tmp_path / "run2"
    run2.mkdir()
    proc, out = run_linux(series, efivars_initramfs[series], run2, "--efivars", str(store),
                          "--append", "console=ttyAMA0 efitest=list,read")
    assert proc.returncode == 0, proc.stderr + out[-3000:]
    in_order(out, [
        rf"^EFITEST var {KEPT} attr=0x7 size=16$",
        *_firmware_listing(),
        r"^EFITEST vars=6$",
        rf"^EFITEST read {KEPT} attr=0x7 data={DATA}$",
        rf"^EFITEST read {SCRATCH} missing$",
        r"^EFITEST DONE$",
    ])
    assert "EFITEST ERROR" not in out


def _pstore_listing(out: str, backend: str) -> tuple[list[str], str]:
    """The dmesg files /init listed in the boot after the panic, and the one holding the panic."""
    after = out.split("Rebooting in 1 seconds", 1)[-1]
    files = re.findall(rf"^PSTORE file=(dmesg-{backend}-\d+) size=[1-9]\d*$", after, re.MULTILINE)
    panic = re.findall(rf"^PSTORE (dmesg-{backend}-\d+): <0>\[ *[\d.]+\] {PANIC}$", after, re.MULTILINE)
    assert len(panic) == 1, after[-3000:]
    return files, panic[0]


def _dump_variables(store: Path) -> dict[str, tuple[int, bytes]]:
    return {name: value for (g, name), value in _stored(store).items() if g == CRASH_GUID}


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_efi_pstore_keeps_the_panic_across_a_warm_reset_and_into_the_next_run(
        series: str, efivars_initramfs: dict[str, Path], tmp_path: Path) -> None:
    backend = BACKEND[series]
    store = tmp_path / "vars.json"
    run1 = tmp_path / "run1"
    run1.mkdir()
    proc, out = run_linux(series, efivars_initramfs[series], run1, "--efivars", str(store), "--max-reboots", "1",
                          "--append", "console=ttyAMA0 panic=1 erst_disable efipstore pstoretest pstore_crash")
    assert proc.returncode == 0, proc.stderr + out[-3000:]
    assert "warm reset (PSCI SYSTEM_RESET): boot 2" in proc.stderr
    in_order(out, [
        r"ERST: Error Record Serialization Table \(ERST\) support is disabled\.",
        rf"pstore: Registered {backend} as persistent store backend",
        r"^EFITEST loaded /lib/modules/[^/]+/kernel/drivers/firmware/efi/efi-pstore\.ko$",
        r"^EFITEST efi_pstore pstore_disable=N$",
        r"^PSTORE files=0 dmesg=0$",
        r"^PSTORE crash$",
        PANIC,
        r"Rebooting in 1 seconds",
        r"Booting Linux on physical CPU",                           # the second boot
        rf"pstore: Registered {backend} as persistent store backend",
        rf"^PSTORE file=dmesg-{backend}-\d+ size=[1-9]\d*$",
        rf"^PSTORE dmesg-{backend}-\d+: <0>\[ *[\d.]+\] {PANIC}$",
        r"^PSTORE files=\d+ dmesg=[1-9]\d*$",
        r"reboot: Power down",
    ])
    assert out.count("Booting Linux on physical CPU") == 2
    assert "INIT ERROR" not in out and "PSTORE ERROR" not in out and "EFITEST ERROR" not in out
    files, panic_file = _pstore_listing(out, backend)

    # The host's file: one NV|BS|RT variable per pstore file, each within efi-pstore's record size.
    dumps = _dump_variables(store)
    assert len(dumps) == len(files) >= 2
    for name, (attributes, data) in dumps.items():
        assert DUMP_NAME.match(name) and attributes == NV_BS_RT and 0 < len(data) <= EFI_PSTORE_RECORD_SIZE
    parts = sorted(int(DUMP_NAME.match(n).group(1)) for n in dumps)       # type: ignore[union-attr]
    assert parts == list(range(1, len(dumps) + 1))
    # ... and the project's decoder inflates part 1, the newest lines, to the panic.
    listing = _armras("efivars", str(store))
    assert listing.returncode == 0, listing.stderr
    m = re.search(rf"^{CRASH_GUID} dump-type0-1-1-\d+-C: NV\|BS\|RT, \d+ bytes: Linux efi-pstore dmesg part 1, "
                  rf"dump 1, written \S+, deflate\n(?:    \| .*\n)*?    \| <0>\[ *[\d.]+\] {PANIC}$",
                  listing.stdout, re.MULTILINE)
    assert m, listing.stdout[:3000]

    # Run 2 from the same file: the same dump, nothing panics.
    run2 = tmp_path / "run2"
    run2.mkdir()
    proc, out = run_linux(series, efivars_initramfs[series], run2, "--efivars", str(store),
                          "--append", "console=ttyAMA0 panic=1 erst_disable efipstore pstoretest")
    assert proc.returncode == 0, proc.stderr + out[-3000:]
    in_order(out, [
        rf"pstore: Registered {backend} as persistent store backend",
        rf"^PSTORE file={panic_file} size=[1-9]\d*$",
        rf"^PSTORE {panic_file}: <0>\[ *[\d.]+\] {PANIC}$",
        rf"^PSTORE files={len(files)} dmesg={len(files)}$",
        r"reboot: Power down",
    ])
    assert out.count("Booting Linux on physical CPU") == 1 and "PSTORE crash" not in out


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_pstore_backend_keeps_the_erst_out_and_a_full_store_keeps_the_panic_until_cleared(
        series: str, efivars_initramfs: dict[str, Path], tmp_path: Path) -> None:
    """pstore.backend=<efi-pstore's name> with the ERST present; the store nearly full:
    Linux's SetVariable of the later parts gets OUT_OF_RESOURCES, the panic's part 1 fits,
    and the file grows no further than the store's size; removing the pstore files frees it."""
    from armras.firmware.efivars import VariableStore

    backend = BACKEND[series]
    store = tmp_path / "vars.json"
    filler = VariableStore.open(store)
    vendor = uuid.UUID(TEST_GUID).bytes_le
    for i in range(7):                                   # 7 x 8 KiB + 5000 bytes: about 3 KiB stay free
        filler.set(vendor, f"Fill{i}", NV_BS_RT, b"x" * (0x2000 - 12), runtime=True)
    filler.set(vendor, "Fill7", NV_BS_RT, b"y" * 5000, runtime=True)
    proc, out = run_linux(series, efivars_initramfs[series], tmp_path, "--efivars", str(store), "--max-reboots", "1",
                          "--append", f"console=ttyAMA0 panic=1 pstore.backend={backend} efipstore pstoretest "
                                      "pstore_crash")
    assert proc.returncode == 0, proc.stderr + out[-3000:]
    refusal = {"6.1": r"pstore: ignoring unexpected backend 'erst'",
               "6.12": r"pstore: backend 'efi_pstore' already in use: ignoring 'erst'"}[series]
    in_order(out, [
        r"ERST: Error Record Serialization Table \(ERST\) support is initialized\.",
        refusal,
        rf"pstore: Registered {backend} as persistent store backend",
        r"^PSTORE crash$",
        PANIC,
        r"Booting Linux on physical CPU",
        rf"^PSTORE dmesg-{backend}-\d+: <0>\[ *[\d.]+\] {PANIC}$",
        r"reboot: Power down",
    ])
    files, _ = _pstore_listing(out, backend)
    dumps = _dump_variables(store)
    assert 1 <= len(dumps) == len(files)
    variables = _stored(store)
    assert len(variables) == 8 + len(dumps)              # the filler is untouched
    used = sum(len(name.encode("utf-16-le")) + 2 + len(data) for (_, name), (_, data) in variables.items())
    assert EDK2_VARIABLE_STORE_SIZE - 0x1000 < used <= EDK2_VARIABLE_STORE_SIZE
    assert store.stat().st_size < 2 * EDK2_VARIABLE_STORE_SIZE    # base64 + JSON of a full store

    # Run 2: removing the dmesg files makes efi-pstore delete its variables (SetVariable, size 0).
    run2 = tmp_path / "run2"
    run2.mkdir()
    proc, out = run_linux(series, efivars_initramfs[series], run2, "--efivars", str(store),
                          "--append", f"console=ttyAMA0 pstore.backend={backend} efipstore efipstore_clear "
                                      "pstoretest")
    assert proc.returncode == 0, proc.stderr + out[-3000:]
    removed = re.findall(rf"^EFITEST pstore removed (dmesg-{backend}-\d+)$", out, re.MULTILINE)
    assert sorted(removed) == sorted(files)
    in_order(out, [r"^PSTORE files=0 dmesg=0$", r"reboot: Power down"])
    assert _dump_variables(store) == {} and len(_stored(store)) == 8


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_efi_pstore_pstore_disable_from_the_command_line_keeps_it_out(
        series: str, efivars_initramfs: dict[str, Path], tmp_path: Path) -> None:
    """efi_pstore.pstore_disable=Y on the kernel command line reaches the module (/init passes
    "<module>.<param>=" words to finit_module as modprobe does): efi-pstore does not register,
    and a panic writes no variable."""
    store = tmp_path / "vars.json"
    proc, out = run_linux(series, efivars_initramfs[series], tmp_path, "--efivars", str(store), "--max-reboots", "0",
                          "--append", "console=ttyAMA0 panic=1 erst_disable efi_pstore.pstore_disable=Y efipstore "
                                      "pstoretest pstore_crash")
    assert proc.returncode == 1 and "--max-reboots 0 ends the run here" in proc.stderr, proc.stderr + out[-3000:]
    in_order(out, [
        r"^EFITEST parameters pstore_disable=Y$",
        r"^EFITEST loaded /lib/modules/[^/]+/kernel/drivers/firmware/efi/efi-pstore\.ko$",
        r"^EFITEST efi_pstore pstore_disable=Y$",
        r"^PSTORE files=0 dmesg=0$",
        PANIC,
    ])
    assert "as persistent store backend" not in out
    assert not store.exists()                                # nothing non-volatile was ever written
