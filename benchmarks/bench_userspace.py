"""Linux user-space workloads timed inside the guest: armras vs QEMU TCG + EDK2.

    python benchmarks/bench_userspace.py [--kernel 6.1|6.12] [--runs N] [--divisor D]

The initramfs /init (guest_images/linux/init.c), given "armras_bench" on the kernel
command line, runs after boot and times each workload with clock_gettime(CLOCK_MONOTONIC),
printing "BENCH <name> n=<N> ns=<T>":

  getpid     200,000 getpid() system calls (svc, no libc caching)
  pagefault  50,000 fresh anonymous 4 KiB pages (mmap 20 MiB, MADV_NOHUGEPAGE, write one
             byte per page, munmap; 10 rounds)
  fork       200 x fork + _exit + waitpid
  forkexec   200 x fork + execve("/init", child mode: exits at once) + waitpid

then powers off. Guest time follows host time under armras (without --deterministic) and
under QEMU TCG, so in-guest times compare directly. The two emulators alternate boot by
boot; the table gives the median time per iteration and the ratio of medians. The command
line is "console=ttyAMA0 panic=-1 nokaslr armras_bench" for both: KASLR would force KPTI
on in both guests (see common.APPEND).
"armras_bench=D" (--divisor D) divides every count by D for quick development runs.

Target (issue 8): each workload <= 1.0x QEMU.
"""
from __future__ import annotations

import argparse

from common import (APPEND, QEMU_MISSING, Run, armras_linux_cmd, bench_lines, find_qemu, interleave, linux_inputs,
                    median, parse_args, print_table, qemu_linux_cmd, require_power_off, run_timed, spread,
                    target_text, verdict)

WORKLOADS = ("getpid", "pagefault", "fork", "forkexec")
UNITS = {"getpid": ("us", 1e3), "pagefault": ("us", 1e3), "fork": ("ms", 1e6), "forkexec": ("ms", 1e6)}
TARGET = 1.0   # armras/QEMU time per iteration, at most


def options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--divisor", type=int, default=1, metavar="D",
                    help="divide the workloads' iteration counts by D (armras_bench=D; default 1: the full sizes)")


def check(name: str, r: Run) -> None:
    """Every workload must report and the guest must power off; otherwise print the console tail."""
    require_power_off(name, r)
    missing = [w for w in WORKLOADS if w not in bench_lines(r.output)]
    if missing or "BENCH DONE" not in r.output:
        raise SystemExit(f"{name}: no BENCH line for {', '.join(missing) or 'DONE'}; command:\n  {' '.join(r.cmd)}\n"
                         f"console tail:\n{r.tail()}")


def per_iteration(runs: list[Run], workload: str) -> list[float]:
    """Nanoseconds per iteration of ``workload`` in each run."""
    out = []
    for r in runs:
        n, ns = bench_lines(r.output)[workload]
        out.append(ns / n)
    return out


def main() -> None:
    args = parse_args(__doc__, options)
    if args.divisor < 1:
        raise SystemExit("--divisor must be at least 1")
    kernel, initrd = linux_inputs(args.kernel)
    append = f"{APPEND} armras_bench" + (f"={args.divisor}" if args.divisor > 1 else "")
    qemu = find_qemu()
    columns = {"armras": lambda: run_timed(armras_linux_cmd(kernel, initrd, append))}
    if qemu is not None:
        columns["QEMU TCG"] = lambda: run_timed(qemu_linux_cmd(qemu, kernel, initrd, append))
    print(f"Debian {args.kernel} ({kernel.parent.name}): user-space workloads (append {append!r}), "
          f"{args.runs} interleaved boot(s)", flush=True)
    res = interleave(columns, args.runs, check)
    n = bench_lines(res["armras"][0].output)
    headers = ["workload", "n", "armras"] + (["QEMU TCG", "armras/QEMU", "target", "verdict"] if qemu else [])
    rows = []
    for w in WORKLOADS:
        unit, scale = UNITS[w]
        ours = [t / scale for t in per_iteration(res["armras"], w)]
        row = [f"{w} ({unit}/iter)", str(n[w][0]), spread(ours)]
        if qemu is not None:
            theirs = [t / scale for t in per_iteration(res["QEMU TCG"], w)]
            ratio = median(ours) / median(theirs)
            row += [spread(theirs), f"{ratio:.2f}x", target_text(TARGET, at_most=True),
                    verdict(ratio, TARGET, at_most=True)]
        rows.append(row)
    walls = {name: [r.wall for r in runs] for name, runs in res.items()}
    row = ["whole run (s)", "", spread(walls["armras"])]
    if qemu is not None:
        row += [spread(walls["QEMU TCG"]), f"{median(walls['armras']) / median(walls['QEMU TCG']):.2f}x", "", ""]
    rows.append(row)
    print_table("in-guest time per iteration, median [min-max] of the runs; ratio of medians", headers, rows)
    if qemu is None:
        print(QEMU_MISSING)


if __name__ == "__main__":
    main()
