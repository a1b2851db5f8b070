"""The README's Python example on Debian's 6.1 and 6.12 kernels: /init `seatest` prints the
physical address of a dirty page, the test poisons it through the API, and the kernel
recovers (mm/memory-failure.c "Memory failure: %#lx: recovery action for %s: %s", the
SIGBUS with si_code BUS_MCEERR_AR = 4 that /init catches). The event log shows the boot
phases, the record written into source 0 for that page, the SEA taken from EL0 with
KVM's syndrome (0x92000410: EC 0x24 lower-EL data abort, DFSC 0x10, FnV), Linux's
read-ack and the power-off.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import armras
from armras.guests.kernels import cache_dir
from conftest import debian_kernel
from test_smp import initramfs  # noqa: F401  (fixture)

pytestmark = pytest.mark.kernel
pytest_plugins = ["pytester"]
KERNEL_CACHE = cache_dir()        # pytester points HOME elsewhere; the cached kernels stay here


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_linux_sea_recovery_through_the_api(series: str, initramfs: Path, tmp_path: Path) -> None:  # noqa: F811
    debian_kernel(series)                      # skip (fail in CI) without the cached kernel
    events = tmp_path / "events.jsonl"
    with armras.boot(kernel=f"debian:{series}", initrd=initramfs, append="console=ttyAMA0 seatest",
                     events=events, timeout=600) as vm:
        paddr = int(vm.wait_for(r"PADDR=(0x[0-9a-f]+)", timeout=300).group(1), 16)
        page = vm.poison(paddr)
        assert page == paddr & ~0xFFF
        vm.expect(rf"Memory failure: {page >> 12:#x}: recovery action for dirty LRU page: Recovered")
        vm.expect(r"SEATEST SIGBUS si_code=4 \(BUS_MCEERR_AR=4\)")
        assert vm.wait_exit() == 0
        ack = vm.ack_state(0)
        assert ack.acknowledged and ack.block_status == 0 and ack.records_written == 1
    log = vm.events
    kinds = [e["event"] for e in log]
    phases = [e["phase"] for e in log if e["event"] == "phase"]
    assert phases == ["efi_stub", "kernel", "init"]
    assert kinds.index("phase") < kinds.index("poison") < kinds.index("cper") < kinds.index("notify") \
        < kinds.index("read_ack") < kinds.index("power_off") == len(kinds) - 1
    cper = next(e for e in log if e["event"] == "cper")
    assert cper["source"] == 0 and cper["sections"] == [{"type": "memory error", "pa": f"{page:#x}"}]
    sea = next(e for e in log if e["event"] == "notify")
    assert sea["kind"] == "sea" and sea["esr"] == "0x92000410" and sea["el"] == 0
    times = [e["guest_time"] for e in log]
    assert times == sorted(times)
    assert events.read_text().count("\n") == len(log)


def test_readme_pytest_example_runs_as_written(pytester: pytest.Pytester, initramfs: Path,  # noqa: F811
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The complete test the README offers users, copied out of README.md, passes on both kernels."""
    import re

    from conftest import REPO

    monkeypatch.setenv("ARMRAS_CACHE", str(KERNEL_CACHE))
    for series in ("6.1", "6.12"):
        debian_kernel(series)
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    example = next(b for b in blocks if b.startswith("# test_sea_recovery.py"))
    pytester.makepyfile(test_sea_recovery=example)
    (pytester.path / "guest_images").symlink_to(REPO / "guest_images")   # the checkout it runs next to
    result = pytester.runpytest("-p", "armras.pytest_plugin", "test_sea_recovery.py")
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_progress_line_on_a_terminal(series: str, initramfs: Path, tmp_path: Path) -> None:  # noqa: F811
    """stderr on a terminal, console to a file: one line rewritten with each boot phase."""
    import os
    import pty
    import subprocess
    import sys

    from conftest import REPO

    debian_kernel(series)
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "ARMRAS_CACHE": str(KERNEL_CACHE)}
    try:
        proc = subprocess.run([sys.executable, "-m", "armras", "run", "--kernel", f"debian:{series}",
                               "--initrd", str(initramfs), "--append", "console=ttyAMA0",
                               "--console", str(tmp_path / "console.log"), "--timeout", "300"],
                              stderr=slave, stdout=subprocess.DEVNULL, env=env, timeout=400)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:          # EIO: the writer is gone and everything was read
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    err = b"".join(chunks).decode()
    assert proc.returncode == 0, err
    updates = [u for u in err.split("\r") if u.startswith("armras: boot 1:")]
    assert [u.split(" (guest")[0].count(">") for u in updates] == [0, 1, 2], updates
    assert updates[0].startswith("armras: boot 1: EFI stub ")
    assert " > kernel " in updates[1] and updates[2].split(" (guest")[0].split(" > ")[2].startswith("/init ")
    assert all(u.endswith("\x1b[K") for u in updates)
    # Cleared at the end, before armras's own last line.
    assert "\r\x1b[Karmras: Linux reached /init after" in err
