"""What --deterministic costs: the same guests with host time and with instruction time.

    python benchmarks/bench_deterministic.py [--kernel 6.1|6.12] [--runs N]

* Linux boot: the Debian kernel with the initramfs (/init powers off), whole `armras run`
  process from spawn to exit, with and without --deterministic, alternating;
* compute loop: no counter reads (the block hook counts instructions in both modes);
* counter loop: `mrs cntvct_el0` in a tight loop, every read trapped to Python in
  deterministic mode (Unicorn serves it natively otherwise);
* ras_ref: the reference guest with an SEA at READY (timer IRQs, WFI idle skips).

Median [min-max] of the runs, ratio of medians deterministic/host time.
Target (issue 8): Linux boot deterministic <= 1.1x non-deterministic.
"""
from __future__ import annotations

import io
import sys
import time
from typing import Callable

from common import (APPEND, REPO, armras_linux_cmd, interleave, linux_inputs, median, parse_args, print_table,
                    require_power_off, run_timed, spread, target_text, verdict)

sys.path.insert(0, str(REPO / "tests"))
from conftest import LOAD_ADDRESS, assemble  # noqa: E402

from armras.board.machine import Machine, MachineConfig  # noqa: E402
from armras.drive.inject import parse_inject_spec, schedule  # noqa: E402

DETERMINISTIC_TARGET = 1.1   # deterministic/host-time Linux boot, at most
POWER_OFF = " ldr x0, =0x84000008\n mov x1, #0\n hvc #0\n b .\n .ltorg\n"
COMPUTE = " ldr x2, =20000000\n1: add x3, x3, x2\n eor x4, x4, x3\n subs x2, x2, #1\n b.ne 1b\n" + POWER_OFF
COUNTER = " ldr x2, =200000\n1: mrs x3, cntvct_el0\n add x4, x4, x3\n subs x2, x2, #1\n b.ne 1b\n" + POWER_OFF


def snippet(source: str, deterministic: bool) -> tuple[float, int]:
    m = Machine(MachineConfig(console=io.BytesIO(), deterministic=deterministic))
    m.mem.write(LOAD_ADDRESS, assemble(source))
    m.cpu.pc = LOAD_ADDRESS
    start = time.perf_counter()
    r = m.run()
    elapsed = time.perf_counter() - start
    m.close()
    return elapsed, r.instructions


def ras_ref(deterministic: bool) -> tuple[float, int]:
    m = Machine(MachineConfig(console=io.BytesIO(), deterministic=deterministic))
    m.load_elf(REPO / "guest_images" / "build" / "ras_ref.elf")
    schedule(m, parse_inject_spec("sea:pa=0x40fa6000,on=^READY"))
    start = time.perf_counter()
    r = m.run()
    elapsed = time.perf_counter() - start
    m.close()
    return elapsed, r.instructions


def snippet_rows(runs: int) -> list[list[str]]:
    rows = []
    cases: tuple[tuple[str, Callable[[bool], tuple[float, int]]], ...] = (
        ("compute loop", lambda d: snippet(COMPUTE, d)),
        ("counter loop", lambda d: snippet(COUNTER, d)),
        ("ras_ref + SEA", ras_ref))
    for name, run in cases:
        host: list[tuple[float, int]] = []
        det: list[tuple[float, int]] = []
        for _ in range(runs):
            host.append(run(False))
            det.append(run(True))
        h = [t * 1e3 for t, _ in host]
        d = [t * 1e3 for t, _ in det]
        mips = f"{median([n / t / 1e6 for t, n in host]):.0f} / {median([n / t / 1e6 for t, n in det]):.0f}"
        rows.append([f"{name} (ms)", spread(h, "{:.1f}"), spread(d, "{:.1f}"), f"{median(d) / median(h):.2f}x",
                     mips, "", ""])
    return rows


def main() -> None:
    args = parse_args(__doc__)
    kernel, initrd = linux_inputs(args.kernel)
    print(f"Debian {args.kernel} ({kernel.parent.name}) boot to power-off with and without --deterministic, "
          f"{args.runs} interleaved run(s)", flush=True)
    res = interleave({"host time": lambda: run_timed(armras_linux_cmd(kernel, initrd, APPEND)),
                      "deterministic": lambda: run_timed(armras_linux_cmd(kernel, initrd, APPEND, deterministic=True))},
                     args.runs, require_power_off)
    host = [r.wall for r in res["host time"]]
    det = [r.wall for r in res["deterministic"]]
    ratio = median(det) / median(host)
    rows = [[f"Linux {args.kernel} boot (s)", spread(host), spread(det), f"{ratio:.2f}x", "",
             target_text(DETERMINISTIC_TARGET, at_most=True), verdict(ratio, DETERMINISTIC_TARGET, at_most=True)]]
    rows += snippet_rows(args.runs)
    print_table("median [min-max] of the runs; ratio of medians",
                ["", "host time", "deterministic", "det/host", "MIPS host / det", "target", "verdict"], rows)


if __name__ == "__main__":
    main()
