"""What --deterministic costs: the same guests with host time and with instruction time.

    python benchmarks/bench_deterministic.py

* compute loop: no counter reads (the block hook counts instructions in both modes);
* counter loop: `mrs cntvct_el0` in a tight loop, every read trapped to Python in
  deterministic mode (Unicorn serves it natively otherwise);
* ras_ref: the reference guest with an SEA at READY (timer IRQs, WFI idle skips).
"""
from __future__ import annotations

import io
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))
from conftest import LOAD_ADDRESS, assemble  # noqa: E402

from armras.machine import Machine, MachineConfig  # noqa: E402
from armras.ras.inject import parse_inject_spec, schedule  # noqa: E402

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


def best(fn, *args: object, repeat: int = 5) -> tuple[float, int]:
    return min((fn(*args) for _ in range(repeat)), key=lambda x: x[0])


def main() -> None:
    for name, run in (("compute loop", lambda d: best(snippet, COMPUTE, d, repeat=3)),
                      ("counter loop", lambda d: best(snippet, COUNTER, d)),
                      ("ras_ref + SEA", lambda d: best(ras_ref, d))):
        host_s, host_n = run(False)
        det_s, det_n = run(True)
        print(f"{name:14s} host time {host_s * 1e3:8.1f} ms ({host_n / host_s / 1e6:7.1f} MIPS)   "
              f"deterministic {det_s * 1e3:8.1f} ms ({det_n / det_s / 1e6:7.1f} MIPS)   x{det_s / host_s:.2f}")


if __name__ == "__main__":
    main()
