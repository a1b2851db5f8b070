"""Debian's unmodified arm64 kernels recover from an SEA on armras as under QEMU+KVM.

Marked `kernel`: needs the reference kernels in the cache (`make kernels`, which
`.ci/run` runs). Outside CI a missing kernel skips the test; in CI it fails.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import debian_kernel, in_order

REPO = Path(__file__).resolve().parents[1]
INITRAMFS = REPO / "guest_images" / "build" / "linux" / "initramfs.cpio"

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def initramfs() -> Path:
    if not INITRAMFS.exists():
        subprocess.run(["make", "-C", str(REPO / "guest_images" / "linux"), f"PYTHON={sys.executable}"], check=True)
    return INITRAMFS


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_debian_kernel_recovers_from_sea_on_poisoned_page(series: str, initramfs: Path, tmp_path: Path) -> None:
    kernel = debian_kernel(series)
    console = tmp_path / "console.log"
    proc = subprocess.run(
        [sys.executable, "-m", "armras", "run", "--kernel", str(kernel), "--initrd", str(initramfs),
         "--append", "console=ttyAMA0 seatest", "--poison-on", r"PADDR=(0x[0-9a-f]+)",
         "--timeout", "300", "--console", str(console)],
        capture_output=True, text=True, timeout=400)
    out = console.read_text(errors="replace")
    assert proc.returncode == 0, f"{proc.stderr}\n{out[-3000:]}"
    m = in_order(out, [
        r"EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path",
        r"ACPI: HEST 0x",
        r"HEST: Table parsing has been initialized\.",
        r"GHES: ",
        r"Run /init as init process",
        r"SEATEST victim va=0x[0-9a-f]+ PADDR=(0x[0-9a-f]+)",
        r"Hardware error from APEI Generic Hardware Error Source: 0$",
        r"event severity: recoverable",
        r"section_type: memory error",
        r"physical_address: (0x[0-9a-f]+)",
        r"Memory failure: (0x[0-9a-f]+): recovery action for dirty LRU page: Recovered",
        r"SEATEST SIGBUS si_code=4 \(BUS_MCEERR_AR=4\)",
        r"SEATEST DONE",
    ])
    page = int(m[5].group(1), 16) & ~0xFFF
    assert int(m[9].group(1), 16) == page                 # the CPER carried the poisoned page
    assert int(m[10].group(1), 16) == page >> 12          # memory_failure() on that pfn
    assert "Kernel panic" not in out and "Oops" not in out
    assert re.search(r"Linux reached /init after [\d.]+ s", proc.stderr), proc.stderr
    if series == "6.1":
        # The kernel's report is line for line what 6.1 prints under QEMU 7.2 + KVM.
        assert _apei_report(out) == _apei_report(QEMU_REFERENCE_LOG.read_text())


QEMU_REFERENCE_LOG = REPO / "tests" / "data" / "qemu-7.2-linux-6.1-sea-reference.log"


def _apei_report(console: str) -> list[str]:
    """GHES's and memory_failure()'s lines, without timestamps and addresses."""
    lines = [re.sub(r"^\[\s*[\d.]+\] ", "", line) for line in console.splitlines()
             if "[Hardware Error]" in line or line.partition("] ")[2].startswith("Memory failure:")]
    assert len(lines) >= 7, console[-3000:]
    return [re.sub(r"0x[0-9a-f]+", "0x...", line) for line in lines]


@pytest.mark.parametrize("inject, expected", [
    ("gpio:pa=0x48000000,on=INIT-OK", [
        r"Hardware error from APEI Generic Hardware Error Source: 1$",
        r"section_type: memory error",
        r"physical_address: 0x0000000048000000",
        r"Memory failure: 0x48000: recovery action for free buddy page: Recovered",
    ]),
    ("arm:mpidr=0x80000000,type=cache,pa=0x48001000,va=0xffff0000,on=INIT-OK", [
        r"Hardware error from APEI Generic Hardware Error Source: 1$",
        r"section_type: ARM processor error",
        r"MIDR: 0x00000000410fd08\d",
        r"Multiprocessor Affinity Register \(MPIDR\): 0x0000000080000000",
        r"error_type: 0x02: cache error",
        r"virtual fault address: 0x00000000ffff0000",
        r"physical fault address: 0x0000000048001000",
    ]),
], ids=["gpio-memory", "gpio-arm-processor"])
def test_debian_kernel_handles_gpio_notified_errors(inject: str, expected: list[str], initramfs: Path,
                                                    tmp_path: Path) -> None:
    # Source 1: CPER + GED interrupt -> ACPI _EVT -> Notify(GEDD) -> hed -> GHES.
    kernel = debian_kernel("6.1")
    console = tmp_path / "console.log"
    proc = subprocess.run(
        [sys.executable, "-m", "armras", "run", "--kernel", str(kernel), "--initrd", str(initramfs),
         # nokaslr: 0x48000000 must be a free page; a KASLR-placed kernel image may cover it.
         "--append", "console=ttyAMA0 nokaslr seatest", "--inject", inject, "--timeout", "300",
         "--console", str(console)], capture_output=True, text=True, timeout=400)
    out = console.read_text(errors="replace")
    assert proc.returncode == 0, f"{proc.stderr}\n{out[-3000:]}"
    in_order(out, [r"INIT-OK", *expected, r"SEATEST DONE"])


def test_shipped_linux_scenarios_pass(tmp_path: Path) -> None:
    # scenarios/linux_*.toml must really run here (not skip): `armras regress` skips a
    # Linux scenario whose kernel is missing, so require the kernels first.
    for series in ("6.1", "6.12"):
        debian_kernel(series)
    gz = REPO / "guest_images" / "build" / "linux" / "initramfs.cpio.gz"
    if not gz.exists():
        subprocess.run(["make", "-C", str(REPO / "guest_images" / "linux"), f"PYTHON={sys.executable}"], check=True)
    # The EINJ and efivars scenarios boot an initramfs with each kernel's einj.ko, efivarfs.ko and
    # efi-pstore.ko (`make kernels` builds them).
    subprocess.run(["make", "-C", str(REPO / "guest_images" / "linux"), f"PYTHON={sys.executable}", "einj",
                    "efivars"], check=True)
    scenarios = sorted((REPO / "scenarios").glob("linux_*.toml"))
    assert [p.name for p in scenarios] == [
        "linux_6_12_bert.toml", "linux_6_12_efi_pstore.toml", "linux_6_12_efivars.toml", "linux_6_12_einj.toml",
        "linux_6_12_erst_pstore.toml", "linux_6_12_firmware_first.toml", "linux_6_12_pcie_aer.toml", "linux_6_12_pcie_switch.toml",
        "linux_6_12_sea.toml", "linux_6_12_serror_uc.toml", "linux_6_12_smp.toml", "linux_6_1_bert.toml",
        "linux_6_1_efi_pstore.toml", "linux_6_1_efivars.toml", "linux_6_1_einj.toml", "linux_6_1_erst_pstore.toml",
        "linux_6_1_firmware_first.toml", "linux_6_1_pcie_switch.toml", "linux_6_1_sea.toml", "linux_6_1_serror_ce.toml",
        "linux_6_1_smp.toml"]
    proc = subprocess.run([sys.executable, "-m", "armras", "regress", *map(str, scenarios),
                           "--log-dir", str(tmp_path / "logs")],
                          capture_output=True, text=True, timeout=1800, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("linux-6.1-sea", "linux-6.12-sea", "linux-6.1-smp", "linux-6.12-smp", "linux-6.1-serror-ce",
                 "linux-6.12-serror-uc", "linux-6.1-firmware-first", "linux-6.12-firmware-first",
                 "linux-6.1-erst-pstore", "linux-6.12-erst-pstore", "linux-6.1-einj", "linux-6.12-einj",
                 "linux-6.12-pcie-aer", "linux-6.1-pcie-switch", "linux-6.12-pcie-switch", "linux-6.1-bert",
                 "linux-6.12-bert", "linux-6.1-efivars", "linux-6.12-efivars", "linux-6.1-efi-pstore",
                 "linux-6.12-efi-pstore"):
        assert f"[PASS] {name} (" in proc.stdout, proc.stdout
    assert "21 passed, 0 failed, 0 skipped" in proc.stdout


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_bus_error_gives_user_space_sigbus_at_the_faulting_address(series: str, initramfs: Path,
                                                                   tmp_path: Path) -> None:
    # /init maps physical 0x0b000000 (nothing answers there) through /dev/mem and reads,
    # then writes it. A genuine external abort has FAR valid, so Linux's do_sea hands it to
    # the task: SIGBUS, BUS_OBJERR (3, arch/arm64/mm/fault.c fault_info for FSC 0x10),
    # si_addr = the virtual address accessed. (With KVM's injection syndrome, FnV=1, it
    # would be 0.)
    kernel = debian_kernel(series)
    console = tmp_path / "console.log"
    proc = subprocess.run(
        [sys.executable, "-m", "armras", "run", "--kernel", str(kernel), "--initrd", str(initramfs),
         "--append", "console=ttyAMA0 bustest", "--timeout", "300", "--console", str(console)],
        capture_output=True, text=True, timeout=400)
    out = console.read_text(errors="replace")
    assert proc.returncode == 0, f"{proc.stderr}\n{out[-3000:]}"
    for what in ("read", "write"):
        m = re.search(rf"^BUSTEST {what} va=(0x[0-9a-f]+) SIGBUS si_code=(\d+) si_addr=(0x[0-9a-f]+)\r?$",
                      out, re.MULTILINE)
        assert m, f"no SIGBUS line for the {what}:\n{out[-3000:]}"
        assert int(m.group(2)) == 3
        assert m.group(3) == m.group(1) != "0x0"


# What Linux does with an SError once ID_AA64PFR0_EL1 advertises the RAS extension
# (arch/arm64/kernel/traps.c, unchanged from 6.1 to 6.12): do_serror() panics unless
# arm64_is_ras_serror() (IDS = 0 and the RAS capability) and arm64_is_fatal_ras_serror()
# says the AET is survivable. CE and UEO ("restartable, not yet consumed") return false:
# the kernel goes on and prints nothing. UEU and UER ("the CPU can't make progress") return
# true, and UC panics inside the classifier; both print "SError Interrupt on CPU%d, code
# 0x%016lx -- SError" and panic with "Asynchronous SError Interrupt".
SERROR_ESR = {"ce": 0xBE001811, "ueo": 0xBE000811, "uer": 0xBE000C11, "ue": 0xBE000411, "uc": 0xBE000011}
SERROR_FATAL = {"ce": False, "ueo": False, "uer": True, "ue": True, "uc": True}


@pytest.mark.parametrize("series", ["6.1", "6.12"])
@pytest.mark.parametrize("aet", list(SERROR_ESR))
def test_debian_kernel_survives_or_panics_on_serror_by_aet(series: str, aet: str, initramfs: Path,
                                                           tmp_path: Path) -> None:
    kernel = debian_kernel(series)
    console = tmp_path / "console.log"
    proc = subprocess.run(
        [sys.executable, "-m", "armras", "-v", "run", "--kernel", str(kernel), "--initrd", str(initramfs),
         "--append", "console=ttyAMA0 seatest", "--inject", f"serror:aet={aet},on=^SEATEST victim ",
         "--timeout", "300", "--console", str(console)],
        capture_output=True, text=True, timeout=400)
    out = console.read_text(errors="replace")
    esr = SERROR_ESR[aet]
    # armras made it pending on the line and CPU 0 took it, with the AET asked for.
    assert re.search(rf"SError: ESR {esr:#010x} \(aet={aet}\) taken by CPU 0 from EL[01] at 0x", proc.stderr), \
        proc.stderr[-3000:]
    in_order(out, [r"CPU features: detected: RAS Extension Support", r"SEATEST victim "])
    if SERROR_FATAL[aet]:
        assert proc.returncode == 126, f"{proc.stderr[-3000:]}\n{out[-3000:]}"
        assert "armras: error: Linux panicked: Asynchronous SError Interrupt" in proc.stderr
        in_order(out, [r"SEATEST victim ",
                       rf"SError Interrupt on CPU0, code 0x{esr:016x} -- SError",
                       r"Kernel panic - not syncing: Asynchronous SError Interrupt"])
        assert "SEATEST DONE" not in out
    else:
        assert proc.returncode == 0, f"{proc.stderr[-3000:]}\n{out[-3000:]}"
        # /init goes on: it sleeps, reads its page back (nothing was poisoned) and powers off.
        in_order(out, [r"SEATEST victim ", r"SEATEST no SIGBUS \(read 0x5a, expected 0x5a\)", r"SEATEST DONE",
                       r"reboot: Power down"])
        assert "SError Interrupt" not in out and "Kernel panic" not in out and "Oops" not in out
