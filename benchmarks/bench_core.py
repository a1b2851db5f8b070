"""Core speed: bare-metal MIPS under armras vs raw Unicorn, and SEA round trips per second.

    python benchmarks/bench_core.py [--runs N]

Bare metal: the same code in both columns, alternating (raw, armras, raw, ...); armras adds
its block hook (stop requests, instruction counting), the MRS/MSR trap for the timer, and
the run loop's periodic stops.
  alu loop    add/eor/subs/b.ne, 4 x 100M instructions, no memory access
  ldst loop   ldr/add/str/subs/b.ne over a 1 MiB buffer in RAM, 5 x 20M instructions
              (every iteration stores: the softmmu store path)
SEA round trips: inject an SEA (CPER written, exception entered), the guest's handler
clears block_status and writes the read-ack register, an HVC asks for the next one.

--kernel is accepted for a uniform command line (make bench) and unused: no Linux here.
Targets (issue 8): bare metal >= 0.9x raw Unicorn; >= 50,000 SEA round trips/s.
"""
from __future__ import annotations

import io
import struct
import sys
import time

from common import REPO, median, parse_args, print_table, spread, target_text, verdict

from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))
from conftest import assemble  # noqa: E402  (zig-assembled snippets)

from armras.board.machine import Machine, MachineConfig  # noqa: E402

LOAD = 0x4008_0000
BUFFER = 0x4100_0000   # 1 MiB, inside both the raw map and armras's RAM
LOOPS = {
    "alu loop": ("""
 ldr x2, =100000000
1: add x3, x3, x2
 eor x4, x4, x3
 subs x2, x2, #1
 b.ne 1b
""", 4 * 100_000_000),
    "ldst loop": (f"""
 ldr x2, =20000000
 ldr x5, ={BUFFER:#x}
 mov x6, #0
1: ldr x7, [x5, x6]
 add x7, x7, x2
 str x7, [x5, x6]
 add x6, x6, #8
 and x6, x6, #0xfffff
 subs x2, x2, #1
 b.ne 1b
""", 7 * 20_000_000),
}
HLT = struct.pack("<I", 0xD4400000)
POWER_OFF = " ldr x0, =0x84000008\n mov x1, #0\n hvc #0\n"
MIPS_TARGET = 0.9      # armras/raw, at least
SEA_TARGET = 50_000    # round trips per second, at least


def raw_unicorn(source: str, insns: int) -> float:
    code = assemble(source + " hlt #0\n .ltorg\n", LOAD)
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.mem_map(0x4000_0000, 0x200_0000)
    uc.mem_write(LOAD, code)
    start = time.perf_counter()
    uc.emu_start(LOAD, LOAD + code.index(HLT))
    return insns / (time.perf_counter() - start) / 1e6


def armras_loop(source: str, insns: int) -> float:
    code = assemble(source + POWER_OFF + " .ltorg\n", LOAD)
    m = Machine(MachineConfig(console=io.BytesIO()))
    m.mem.write(LOAD, code)
    m.cpu.pc = LOAD
    r = m.run()
    m.close()
    return insns / r.wall_seconds / 1e6


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
    args = parse_args(__doc__)
    rows = []
    for name, (source, insns) in LOOPS.items():
        raw: list[float] = []
        ours: list[float] = []
        for _ in range(args.runs):
            raw.append(raw_unicorn(source, insns))
            ours.append(armras_loop(source, insns))
        ratio = median(ours) / median(raw)
        rows.append([f"{name} (MIPS)", spread(ours, "{:.0f}"), spread(raw, "{:.0f}"), f"{ratio:.2f}x",
                     target_text(MIPS_TARGET, at_most=False), verdict(ratio, MIPS_TARGET, at_most=False)])
    sea = [sea_round_trips() for _ in range(args.runs)]
    rows.append(["SEA round trips/s", spread(sea, "{:.0f}"), "", "",
                 f">= {SEA_TARGET:,}", verdict(median(sea), SEA_TARGET, at_most=False)])
    print_table(f"bare metal, {args.runs} interleaved run(s): median [min-max]; ratio of medians",
                ["", "armras", "raw Unicorn", "armras/raw", "target", "verdict"], rows)


if __name__ == "__main__":
    main()
