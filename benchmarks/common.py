"""Shared pieces of the benchmarks: command line, timed child processes, QEMU lookup, tables.

Every benchmark takes ``--runs N`` and ``--kernel 6.1|6.12`` and prints one table whose
rows carry the issue's target next to the measured value (PASS/MISS: informative, never
asserted). Comparisons are measured side by side: the two commands alternate (A, B, A, B,
...) so that a noisy, shared machine slows both alike, and medians are compared.
"""
from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's armras, not an installed one

from armras.guests.kernels import cached_kernel  # noqa: E402

INITRAMFS = REPO / "guest_images" / "build" / "linux" / "initramfs.cpio"
QEMU_FIRMWARE = (Path("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"), Path("/usr/share/AAVMF/AAVMF_CODE.fd"))
INIT_MARKER = "Run /init as init process"
POWER_OFF_MARKER = "reboot: Power down"
KERNEL_SERIES = ("6.1", "6.12")
# nokaslr, for both: armras's and EDK2's EFI_RNG_PROTOCOL seed KASLR, and KASLR forces KPTI on
# ("kernel page table isolation forced ON by KASLR"), which makes every kernel entry/exit
# switch page tables (and flush the emulator's TLB): getpid() costs ~22 us instead of ~7 us
# under QEMU. The measurement is of the emulators, not of KPTI; both run the same kernel paths.
APPEND = "console=ttyAMA0 panic=-1 nokaslr"


def parse_args(doc: str, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The common command line: --runs N and --kernel 6.1|6.12 (plus a script's own options)."""
    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    ap.add_argument("--runs", type=int, default=3, help="measurements per column (default 3)")
    ap.add_argument("--kernel", choices=KERNEL_SERIES, default="6.1", help="Debian kernel series (default 6.1)")
    ap.add_argument("--smp", type=int, default=1, choices=range(1, 9), metavar="N",
                    help="CPUs for Linux guests, armras --smp N vs QEMU -smp N (default 1)")
    if extra is not None:
        extra(ap)
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    compile_armras()
    return args


def compile_armras() -> None:
    """Write armras's bytecode once, as `pip install` does: an editable checkout under
    PYTHONDONTWRITEBYTECODE (or a read-only one) would otherwise recompile its ~80 modules
    in every armras process measured (~0.1 s of each boot here), which is not armras."""
    compileall.compile_dir(str(REPO / "armras"), quiet=1)


def linux_inputs(series: str) -> tuple[Path, Path]:
    """The cached Debian kernel Image and the initramfs, or exit with what to run first."""
    kernel = cached_kernel(series)
    if kernel is None:
        raise SystemExit(f"no cached Debian {series} kernel: run `make kernels` first")
    if not INITRAMFS.exists():
        raise SystemExit(f"no {INITRAMFS.relative_to(REPO)}: run `make guests` first")
    return kernel, INITRAMFS


@dataclass(frozen=True)
class Qemu:
    binary: str
    firmware: Path


def find_qemu() -> Qemu | None:
    """qemu-system-aarch64 and Debian's EDK2 image, when both are installed (nothing is downloaded)."""
    binary = shutil.which("qemu-system-aarch64")
    firmware = next((f for f in QEMU_FIRMWARE if f.exists()), None)
    return Qemu(binary, firmware) if binary and firmware else None


QEMU_MISSING = ("QEMU column not measured: qemu-system-aarch64 or its EDK2 firmware is not installed "
                "(apt-get install qemu-system-arm qemu-efi-aarch64 ipxe-qemu)")


def armras_linux_cmd(kernel: Path, initrd: Path, append: str, deterministic: bool = False,
                     timeout: float = 600, smp: int = 1) -> list[str]:
    cmd = [sys.executable, "-m", "armras", "run", "--kernel", str(kernel), "--initrd", str(initrd),
           "--append", append, "--timeout", f"{timeout:g}", "--smp", str(smp)]
    return cmd + (["--deterministic"] if deterministic else [])


def qemu_linux_cmd(qemu: Qemu, kernel: Path, initrd: Path, append: str, smp: int = 1) -> list[str]:
    """QEMU 7.2 TCG + EDK2 on the same board shape: virt with RAS, `smp` CPUs, 512 MiB."""
    return [qemu.binary, "-M", "virt,ras=on", "-cpu", "cortex-a57", "-m", "512", "-smp", str(smp),
            "-bios", str(qemu.firmware), "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", append, "-nographic", "-no-reboot"]


@dataclass
class Run:
    """One child process: wall time from spawn to exit, its peak RSS, console and marker times."""

    cmd: list[str]
    wall: float
    max_rss_kib: int
    status: int
    output: str
    marks: dict[str, float] = field(default_factory=dict)   # marker -> seconds after spawn
    timed_out: bool = False

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def run_timed(cmd: Sequence[str], markers: Sequence[str] = (), timeout: float = 600) -> Run:
    """Run ``cmd`` (stdin closed, stdout+stderr captured), timing it and the first console line
    containing each marker. Peak RSS comes from wait4()'s rusage of this child alone."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    start = time.monotonic()
    proc = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill)
    timer.start()
    marks: dict[str, float] = {}
    chunks: list[bytes] = []
    pending = b""
    assert proc.stdout is not None
    try:
        while chunk := proc.stdout.read1(65536):
            now = time.monotonic() - start
            chunks.append(chunk)
            if len(marks) < len(markers):
                pending = (pending + chunk)[-4096:]
                text = pending.decode(errors="replace")
                for m in markers:
                    if m not in marks and m in text:
                        marks[m] = now
        _, wait_status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
    except BaseException:
        kill()
        proc.wait()
        raise
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(wait_status)  # Popen must not wait again
    proc.stdout.close()
    output = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    return Run(list(cmd), wall, int(usage.ru_maxrss), proc.returncode, output, marks, killed.is_set())


def interleave(commands: dict[str, Callable[[], Run]], runs: int,
               check: Callable[[str, Run], None] | None = None) -> dict[str, list[Run]]:
    """Run every column once per round, alternating, ``runs`` rounds; progress on stderr."""
    results: dict[str, list[Run]] = {name: [] for name in commands}
    for i in range(runs):
        for name, fn in commands.items():
            r = fn()
            print(f"  [{i + 1}/{runs}] {name}: {r.wall:.2f} s, peak RSS {r.max_rss_kib / 1024:.0f} MiB, "
                  f"exit {r.status}", file=sys.stderr, flush=True)
            if check is not None:
                check(name, r)
            results[name].append(r)
    return results


def require_power_off(name: str, r: Run) -> None:
    """A boot that did not end in the guest's own power-off measures nothing: say why, stop."""
    if r.timed_out or r.status != 0 or POWER_OFF_MARKER not in r.output:
        why = "timed out" if r.timed_out else f"exit status {r.status}"
        raise SystemExit(f"{name}: the guest did not power off cleanly ({why}); "
                         f"command:\n  {' '.join(r.cmd)}\nconsole tail:\n{r.tail()}")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """median [min-max] of the runs, or the one value."""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def verdict(value: float, target: float, at_most: bool) -> str:
    """'PASS'/'MISS' against the issue's target (value <= target when at_most, else >=)."""
    ok = value <= target if at_most else value >= target
    return "PASS" if ok else "MISS"


def target_text(target: float, at_most: bool, unit: str = "x") -> str:
    return f"{'<=' if at_most else '>='} {target:g}{unit}"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)).rstrip())
    print(line)
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    sys.stdout.flush()


def bench_lines(output: str) -> dict[str, tuple[int, int]]:
    """The guest's 'BENCH <name> n=<N> ns=<T>' lines: name -> (n, ns)."""
    return {m[1]: (int(m[2]), int(m[3]))
            for m in re.finditer(r"^BENCH (\w+) n=(\d+) ns=(\d+)\s*$", output, re.MULTILINE)}
