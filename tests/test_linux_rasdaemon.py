"""Our CPER bytes against a consumer none of us wrote: Debian's rasdaemon in the guest.

The initramfs is Debian trixie's arm64 busybox-static and rasdaemon 0.8.3 (with Perl and
DBD::SQLite for ras-mc-ctl), unpacked by armras.guests.userland, plus the project's /init,
which runs tests/data/rasdaemon.sh. The script starts `rasdaemon --foreground --record`,
then (each step a console trigger for the host):

* runs the seatest victim (/init --seatest); the host poisons its page (`--poison-on`), the
  read takes a Synchronous External Abort and the SEA source's memory error;
* prints "RASTEST gpio": the host reports a memory error at 0x48000000 (a free page)
  through the GPIO source;
* prints "RASTEST arm": the host reports an ARM processor error (cache, corrected) from
  CPU 1 of the 2-CPU board through the GPIO source;

and prints rasdaemon's log, `ras-mc-ctl --summary` and `ras-mc-ctl --errors`.

What is expected comes from rasdaemon and Linux: a memory error is recorded from the
kernel's ras:memory_failure_event (mm/memory-failure.c: pfn, page type, "Recovered"):
Debian's kernels have CONFIG_EDAC_GHES off, so there is no ras:mc_event for memory CPER
and rasdaemon keeps no severity for it (the kernel's "event severity:" line has it).
An ARM processor error is recorded from ras:arm_event with MPIDR_EL1 of the reporting
CPU: Aff0 = its index and bit 31 (RES1), 0x80000001 for CPU 1 (Arm ARM D23.2 MPIDR_EL1);
6.12's event also carries the CPU number and the severity, which rasdaemon prints as
"cpu: 1" and "severity: Corrected" (ras-arm-handler.c); 6.1's does not.
"""
from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest

from armras.board.machine import Machine, MachineConfig
from armras.drive.inject import parse_inject_spec, schedule, schedule_poison_on
from armras.guests.linux import boot_linux
from armras.guests.userland import UserlandMissing, build_userland_initramfs
from conftest import REPO, debian_kernel, in_order, unavailable
from test_smp import initramfs  # noqa: F401  (fixture: builds the project's /init)

pytestmark = pytest.mark.kernel

SCRIPT = REPO / "tests" / "data" / "rasdaemon.sh"
GPIO_PA = 0x4800_0000                 # a free page well inside the 512 MiB guest (nokaslr: no
                                      # KASLR-placed kernel image over it)
ARM_MPIDR_RES1 = 1 << 31             # MPIDR_EL1 bit 31 is RES1; Aff0 (bits 7:0) = the CPU


@pytest.fixture(scope="module")
def userland(tmp_path_factory: pytest.TempPathFactory, initramfs: Path) -> Path:  # noqa: F811
    init = initramfs.with_name("init").read_bytes()
    try:
        data = build_userland_initramfs(init, ["busybox-static", "rasdaemon"],
                                        {"/rasdaemon.sh": SCRIPT.read_bytes()})
    except UserlandMissing as e:
        unavailable("the Debian userland (busybox-static, rasdaemon)", f"{e}; run `make userland`")
    path = tmp_path_factory.mktemp("userland") / "rasdaemon.cpio"
    path.write_bytes(data)
    return path


# The ARM processor error comes from CPU 1 of a 2-CPU board. rasdaemon waits 30 s of
# guest time (30000 x usleep(1000)) for each tracepoint the kernel lacks before it
# records: 6.12 lacks one (ras:extlog_mem_event, x86), 6.1 nine (also the eight cxl:*
# events of Linux 6.3+), so the 6.1 case runs ~5 minutes of guest time (~7 minutes of
# wall time on a quiet 2-core host; README.md, "A Debian userland in the guest").
CPUS = {"6.1": 2, "6.12": 2}


def _mpidr(cpu: int) -> int:
    return ARM_MPIDR_RES1 | cpu         # Aff0 = the CPU's index on this board


def _run(series: str, initrd: Path, log_path: Path) -> tuple[str, int, float]:
    console = io.BytesIO()
    cpus = CPUS[series]
    # A run took 279 s of wall clock on a shared 2-core host; 1800 s leaves room for a loaded one.
    m = Machine(MachineConfig(console=console, cpus=cpus, timeout=1800.0))
    start = time.monotonic()
    try:
        boot_linux(m, debian_kernel(series), initrd, "console=ttyAMA0 nokaslr armras_sh=/rasdaemon.sh")
        schedule_poison_on(m, r"^SEATEST victim .*PADDR=(0x[0-9a-f]+)")
        schedule(m, parse_inject_spec(f"gpio:pa={GPIO_PA:#x},on=^RASTEST gpio$"))
        schedule(m, parse_inject_spec(f"arm:cpu={cpus - 1},severity=corrected,on=^RASTEST arm$"))
        status = m.run().status
    finally:
        m.close()
        log_path.write_bytes(console.getvalue())
    return console.getvalue().decode("utf-8", "replace").replace("\r\n", "\n"), status, time.monotonic() - start


def _section(out: str, title: str, end: str) -> str:
    return out[out.index(f"RASTEST {title}:\n"):out.index(f"RASTEST {end}")]


@pytest.mark.parametrize("series", sorted(CPUS))
def test_rasdaemon_records_sea_gpio_and_arm_errors(series: str, userland: Path, tmp_path: Path) -> None:
    out, status, wall = _run(series, userland, tmp_path / "console.log")
    cpu = CPUS[series] - 1
    mpidr = _mpidr(cpu)
    assert status == 0, out[-4000:]
    assert "RASTEST ERROR" not in out and "SH exit=0" in out, out[-4000:]
    victim, _, _ = in_order(out, [r"^SEATEST victim va=0x[0-9a-f]+ PADDR=(0x[0-9a-f]+)",
                                  r"^SEATEST SIGBUS si_code=4 ", r"^RASTEST done$"])
    sea_pfn = int(victim.group(1), 16) >> 12
    gpio_pfn = GPIO_PA >> 12

    log = _section(out, "rasdaemon log", "ras-mc-ctl --summary")
    assert "Enabled event ras:memory_failure_event" in log and "Enabled event ras:arm_event" in log
    # The live trace lines rasdaemon prints while recording (ras-memory-failure-handler.c,
    # ras-arm-handler.c).
    assert re.search(rf"memory_failure_event .* pfn={sea_pfn:#x} page_type=dirty LRU page "
                     r"action_result=Recovered", log), log
    assert re.search(rf"memory_failure_event .* pfn={gpio_pfn:#x} page_type=free buddy page "
                     r"action_result=Recovered", log), log
    assert re.search(rf"arm_event .* affinity: 0 MPIDR: {mpidr:#x} MIDR: 0x[0-9a-f]+ running_state: 1",
                     log), log
    if series == "6.12":
        # 6.12's arm_event also carries the error information and the CPU/severity; 6.1's
        # ends at psci_state (include/ras/ras_event.h), so rasdaemon has nothing more to print.
        assert re.search(r"error_types: cache\s+error_count:1", log), log
        assert re.search(rf"^ cpu: {cpu}\n severity: Corrected$", log, re.M), log

    summary = _section(out, "ras-mc-ctl --summary", "ras-mc-ctl --errors")
    assert f"CPU(mpidr={mpidr:#x}) has 1 errors" in summary, summary
    assert re.search(r"Memory failure events summary:\n\s+Recovered errors: 2\n", summary), summary

    errors = _section(out, "ras-mc-ctl --errors", "done")
    count = "error_count=1, " if series == "6.12" else ""      # 6.1's event has no error count
    assert re.search(rf"^1 .* error: {count}affinity_level=0, mpidr={mpidr:#x}, running_state=0x1, "
                     r"psci_state=0x0$", errors, re.M), errors
    failures = re.findall(r"^\d+ .* error: pfn=(0x[0-9a-f]+), page_type=([a-zA-Z ]+), action_result=(\w+)$",
                          errors, re.M)
    assert failures == [(f"{sea_pfn:#x}", "dirty LRU page", "Recovered"),
                        (f"{gpio_pfn:#x}", "free buddy page", "Recovered")], errors
    print(f"{series}: rasdaemon run took {wall:.0f} s wall")
