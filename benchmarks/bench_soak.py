"""Soak: 10,000 SEA injections racing guest IRQs, every record delivered exactly once, RSS flat.

    python benchmarks/bench_soak.py [--runs N] [--records R]

The reference guest (guest_images/build/ras_ref.elf) takes a 10 ms virtual-timer tick
for 300 ticks (3 s of guest time) while a checksum workload runs. From its READY line on,
an SEA is injected every 200-3000 guest instructions (an at_instruction chain, as
tests/test_run_loop_edges.py::test_sea_injections_racing_guest_irqs_are_each_delivered_once
does) whenever the guest has acknowledged the previous record; so injections land
anywhere: in IRQ vectors, handlers, the workload. Fresh machines run back to back in this
one process until R records were accepted (a soak); --runs N repeats the soak.

After every machine: exit status 0, the guest's `DONE sea=N gpio=0 ticks=3xx invalid=0`
line, N == accepted or accepted - 1 (only the last record may arrive after the guest
printed its count, while it shuts down), the source's records_written == accepted; and
the process's RSS (/proc/self/statm, after gc.collect()) and peak RSS (ru_maxrss).
Machine 1 pays one-time costs (imports, translation of the guest, allocator arenas), so
RSS growth is taken from machine 2 to the last machine of the last soak.

--kernel and --smp are accepted for a uniform command line (make bench) and unused.
Targets (issue 7): every record delivered exactly once; RSS growth < 10 MiB.
"""
from __future__ import annotations

import gc
import io
import os
import random
import re
import resource
import sys
import time
from dataclasses import dataclass

from common import REPO, median, parse_args, print_table, spread

from armras.board.machine import Machine, MachineConfig  # noqa: E402
from armras.errors import NotAcknowledged  # noqa: E402

IMAGE = REPO / "guest_images" / "build" / "ras_ref.elf"
SEA_PA = 0x40FA_6000
RECORDS = 10_000
RSS_GROWTH_TARGET = 10.0      # MiB, machine 2 -> last, at most
DONE = r"^DONE sea=(\d+) gpio=(\d+) ticks=(\d+) invalid=(\d+)$"
PAGE = os.sysconf("SC_PAGE_SIZE")


class Discard(io.RawIOBase):
    """The guest console: counted, not kept (a soak prints ~4 lines per record)."""

    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:    # type: ignore[override]
        self.size += len(data)
        return len(data)


@dataclass
class MachineRun:
    status: int
    wall: float
    accepted: int
    written: int
    done: tuple[int, int, int, int] | None     # sea, gpio, ticks, invalid
    rss_mib: float                             # current, /proc/self/statm
    maxrss_mib: float                          # peak so far, ru_maxrss

    @property
    def exact(self) -> bool:
        """Every accepted record reached the guest's handler once, and nothing else went wrong."""
        if self.status != 0 or self.done is None or self.written != self.accepted:
            return False
        sea, gpio, ticks, invalid = self.done
        return sea in (self.accepted, self.accepted - 1) and gpio == 0 and invalid == 0 and 300 <= ticks < 400


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / (1 << 20)


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux


def one_machine(seed: int) -> MachineRun:
    m = Machine(MachineConfig(console=Discard(), timeout=120.0))  # type: ignore[arg-type]
    m.load_elf(IMAGE)
    source = m.sources.by_id(0)
    rng = random.Random(seed)
    accepted = 0
    done: list[re.Match[str]] = []

    def attempt() -> None:
        nonlocal accepted
        try:
            m.inject_sea(SEA_PA)
            accepted += 1
        except NotAcknowledged:
            pass
        m.at_instruction(m.instructions + rng.randrange(200, 3000), attempt, "soak injection")

    m.on_console("^READY", lambda _m: attempt(), "start injecting")
    m.on_console(DONE, done.append, "guest count")
    start = time.perf_counter()
    try:
        status = m.run().status
    except Exception as e:       # a crash or timeout is a failed machine, not the end of the soak
        print(f"    machine failed: {e}", file=sys.stderr)
        status = getattr(e, "exit_code", 1)
    finally:
        m.close()
    wall = time.perf_counter() - start
    written = source.records_written
    counts = tuple(int(g) for g in done[0].groups()) if done else None
    return MachineRun(status, wall, accepted, written, counts, 0.0, 0.0)  # type: ignore[arg-type]


def soak(records: int, runs_so_far: list[MachineRun], seed: int) -> tuple[int, float]:
    """Machines back to back until `records` were accepted: (records, seconds)."""
    total = 0
    start = time.perf_counter()
    while total < records:
        r = one_machine(seed + len(runs_so_far))
        gc.collect()                     # the machine is garbage now: measure what stays
        r.rss_mib, r.maxrss_mib = current_rss_mib(), max_rss_mib()
        runs_so_far.append(r)
        total += r.accepted
        sea = r.done[0] if r.done else "-"
        print(f"  machine {len(runs_so_far)}: exit {r.status}, accepted {r.accepted}, guest sea={sea}, "
              f"{'exact' if r.exact else 'MISMATCH'}, {r.wall:.1f} s, RSS {r.rss_mib:.1f} MiB, "
              f"peak {r.maxrss_mib:.1f} MiB, {total}/{records}", file=sys.stderr, flush=True)
    return total, time.perf_counter() - start


def main() -> None:
    def extra(ap) -> None:
        ap.add_argument("--records", type=int, default=RECORDS,
                        help=f"records accepted per soak (default {RECORDS:,})")
        ap.add_argument("--seed", type=int, default=7, help="injection-interval seed (default 7)")
        ap.set_defaults(runs=1)          # one soak is already thousands of measurements

    args = parse_args(__doc__, extra)
    if args.records < 1:
        raise SystemExit("--records must be at least 1")
    if not IMAGE.exists():
        raise SystemExit(f"no {IMAGE.relative_to(REPO)}: run `make guests` first")
    machines: list[MachineRun] = []
    totals: list[int] = []
    rates: list[float] = []
    for i in range(args.runs):
        print(f"[{i + 1}/{args.runs}] soak: {args.records:,} SEA records into fresh ras_ref machines",
              file=sys.stderr, flush=True)
        total, seconds = soak(args.records, machines, args.seed)
        totals.append(total)
        rates.append(total / seconds)

    exact = sum(r.exact for r in machines)
    later = machines[1:] or machines
    growth = later[-1].rss_mib - later[0].rss_mib
    peak_growth = later[-1].maxrss_mib - later[0].maxrss_mib
    all_exact = exact == len(machines)
    rows = [
        ["records accepted", spread(totals, "{:,.0f}"), f">= {args.records:,}",
         "PASS" if min(totals) >= args.records else "MISS"],
        ["records/s (whole soak, machine setup included)", spread(rates, "{:,.0f}"), "", ""],
        ["machines delivering every record exactly once", f"{exact}/{len(machines)}", "all",
         "PASS" if all_exact else "MISS"],
        ["records per machine", spread([r.accepted for r in machines], "{:,.0f}"), "", ""],
        [f"RSS, machine {machines.index(later[0]) + 1} -> {len(machines)}",
         f"{later[0].rss_mib:.1f} -> {later[-1].rss_mib:.1f} MiB", "", ""],
        ["RSS growth", f"{growth:+.1f} MiB", f"< {RSS_GROWTH_TARGET:g} MiB",
         "PASS" if growth < RSS_GROWTH_TARGET else "MISS"],
        ["peak RSS (ru_maxrss) growth", f"{peak_growth:+.1f} MiB ({later[-1].maxrss_mib:.1f} MiB)",
         f"< {RSS_GROWTH_TARGET:g} MiB", "PASS" if peak_growth < RSS_GROWTH_TARGET else "MISS"],
    ]
    print_table(f"soak, {args.runs} run(s) of {args.records:,} records, {len(machines)} machines: "
                "median [min-max]", ["", "armras", "target", "verdict"], rows)
    ok = all_exact and min(totals) >= args.records and growth < RSS_GROWTH_TARGET \
        and peak_growth < RSS_GROWTH_TARGET
    print(f"{'PASS' if ok else 'MISS'}: {sum(totals):,} records in {len(machines)} machines, "
          f"{median(rates):,.0f} records/s, exactly once {exact}/{len(machines)}, "
          f"RSS growth {growth:+.1f} MiB (peak {peak_growth:+.1f} MiB) from machine 2 to the last")


if __name__ == "__main__":
    main()
