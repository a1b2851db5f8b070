"""Core speed: bare-metal MIPS under armras vs raw Unicorn, and SEA round trips per second.

    python benchmarks/bench_core.py

The loop is the same code in both runs; armras adds its block hook (stop requests,
instruction counting), the MRS/MSR trap for the timer, and the run loop's periodic stops.
"""
from __future__ import annotations

import io
import struct
import sys
import time
from pathlib import Path

from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import assemble  # noqa: E402  (zig-assembled snippets)

from armras.machine import Machine, MachineConfig  # noqa: E402

LOAD = 0x4008_0000
ITERATIONS = 100_000_000
LOOP = f"""
 ldr x2, ={ITERATIONS}
1: add x3, x3, x2
 eor x4, x4, x3
 subs x2, x2, #1
 b.ne 1b
"""
LOOP_INSNS = 4 * ITERATIONS
HLT = struct.pack("<I", 0xD4400000)


def raw_unicorn() -> float:
    code = assemble(LOOP + " hlt #0\n .ltorg\n", LOAD)
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.mem_map(0x4000_0000, 0x100_0000)
    uc.mem_write(LOAD, code)
    start = time.perf_counter()
    uc.emu_start(LOAD, LOAD + code.index(HLT))
    return LOOP_INSNS / (time.perf_counter() - start) / 1e6


def armras_loop() -> float:
    code = assemble(LOOP + " ldr x0, =0x84000008\n mov x1, #0\n hvc #0\n .ltorg\n", LOAD)
    m = Machine(MachineConfig(console=io.BytesIO()))
    m.mem.write(LOAD, code)
    m.cpu.pc = LOAD
    r = m.run()
    m.close()
    return LOOP_INSNS / r.wall_seconds / 1e6


def sea_round_trips(n: int = 2000) -> float:
    """Inject an SEA, let the guest's handler clear block_status and ack, repeat."""
    m = Machine(MachineConfig(console=io.BytesIO()))
    src = m.sources.by_id(0)
    code = assemble("""
 adr x2, vectors
 msr vbar_el1, x2
 ldr x3, =0x40400000
 mov sp, x3
1: hvc #0x99
 b 1b
 .balign 0x800
vectors:
 .skip 0x200
 ldr x9, [x13]
 str wzr, [x9]
 ldr x10, [x14]
 and x10, x10, #~1
 orr x10, x10, #1
 str x10, [x14]
 eret
 .ltorg
""", LOAD)
    m.mem.write(LOAD, code)
    m.cpu.pc = LOAD
    m.cpu.set_x(13, src.error_status_address)
    m.cpu.set_x(14, src.read_ack_address)
    done = 0

    def ready(cpu: object) -> None:
        nonlocal done
        if done == n:
            m.power_off(0, "benchmark done")
            return
        done += 1
        m.inject_sea(0x4100_0000 + 0x1000 * (done % 64))

    m.hvc_handlers[0x99] = ready
    start = time.perf_counter()
    m.run()
    elapsed = time.perf_counter() - start
    m.close()
    assert src.records_written == n and src.acknowledged()
    return n / elapsed


def main() -> None:
    raw = raw_unicorn()
    ours = armras_loop()
    print(f"raw Unicorn : {raw:8.0f} MIPS")
    print(f"armras      : {ours:8.0f} MIPS  ({ours / raw:.0%} of raw)")
    print(f"SEA round trips (inject -> guest handler acks): {sea_round_trips():.0f} /s")


if __name__ == "__main__":
    main()
