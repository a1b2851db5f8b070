#!/usr/bin/env python3
"""Run the guest images under armras with the canonical injections and check the
exit statuses and marker lines documented in guest_images/README.md.
Usage (from anywhere): smoke.py [build_dir]   (needs armras importable)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "guest_images" / "build"

CASES = [
    # (name, image, extra args, expected exit status, regexes that must match the console)
    ("ras_ref idle", "ras_ref", [], 0,
     [r"^HEST source=0 type=10 notify=8 ", r"^HEST source=1 type=10 notify=7 ", r"^READY$",
      r"^DONE sea=0 gpio=0 ticks=300 invalid=0$"]),
    ("ras_ref sea+gpio+arm", "ras_ref",
     ["--inject", "sea:pa=0x41234000,on=^READY", "--inject", "gpio:pa=0x42345000,at=0.5",
      "--inject", "arm:pa=0xabba0bad,mpidr=0x80000101,type=tlb,va=0xdeadbeef,at=1.0"], 0,
     [r"^SEA ESR=0x96000410 EC=0x25 DFSC=0x10 FnV=1 ELR=0x[0-9a-f]+$",
      r"^CPER source=0 block_status=0x1 severity=0 sections=1$",
      r"^CPER section=memory pa=0x0000000041234000$",
      r"^ACK source=0 read_ack=0x1 block_status=0x0$",
      r"^GED event=0x20 intid=41: hardware error$",
      r"^CPER section=memory pa=0x0000000042345000$",
      r"^CPER section=arm-processor mpidr=0x80000101 errors=1 type=0x4\(tlb\) pa=0xabba0bad va=0xdeadbeef$",
      r"^ACK source=1 read_ack=0x1 block_status=0x0$",
      r"^DONE sea=1 gpio=2 ticks=300 invalid=0$"]),
    ("ras_ref poisoned workload", "ras_ref", ["--poison", "work"], 4,
     [r"^SEA storm: \d+ SEAs at ELR=0x[0-9a-f]+ without progress$"]),
    ("ras_el0 poisoned", "ras_el0", ["--poison-on", r"VICTIM pa=(0x[0-9a-f]+)"], 0,
     [r"^VICTIM pa=0x[0-9a-f]+000$", r"^READY$",
      r"^SEA from EL0 ESR=0x92000410 EC=0x24 DFSC=0x10 FnV=1 ",
      r"^CPER source=0 section=memory pa=0x[0-9a-f]+$", r"^ACK source=0 read_ack=0x1",
      r"^EL0 task killed: SIGBUS BUS_MCEERR_AR at pa=0x[0-9a-f]+$"]),
    ("ras_el0 not poisoned", "ras_el0", [], 1,
     [r"^EL0 task survived: page was not poisoned$"]),
    ("exc_test", "exc_test", [], 0,
     [rf"^EXC {n} .* -> OK$" for n in ("svc0", "dabt-el0", "dabt-el1", "brk7", "undef", "svc1-el1")]
     + [r"^EXC summary ok=6 fail=0$"]),
    ("sdei_ref sdei+polled", "sdei_ref",
     ["--inject", "sdei:pa=0x40fa6000,on=^SDEI WAIT basic", "--inject", "sdei:pa=0x40fb7000,on=^SDEI WAIT resume",
      "--inject", "polled:pa=0x41234000,on=^POLL source=3 every"], 0,
     [r"^SDEI event 804 on CPU 0: x0=0x324 ", r"^SDEI regs intact after basic: ",
      r"^SDEI resumed at IRQ vector: ", r"^SDEI regs intact after resume: ",
      r"^POLL source=3 record at poll 1 \(\d+ ms\): physical_address 0x41234000$",
      r"^DONE sdei_taken=2 failures=0$"]),
    ("sdei_ref no injection", "sdei_ref", [], 2,
     [r"^FAIL: SDEI basic: event 804 was not taken within 2000 ms$"]),
    ("hostile", "hostile", [], 0,
     [rf"^HOSTILE {n} -> OK$" for n in ("long-line", "hvc-flood", "flash-store", "device-call",
                                         "far-timer", "unassigned")]
     + [r"^HOSTILE ok=6 fail=0$"]),
]


def main() -> int:
    failed = 0
    for name, image, args, status, patterns in CASES:
        cmd = [sys.executable, "-m", "armras", "run", str(BUILD / f"{image}.elf"), "--timeout", "60", *args]
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        lines = p.stdout.splitlines()
        problems = []
        if p.returncode != status:
            problems.append(f"exit status {p.returncode}, expected {status}")
        for pat in patterns:
            if not any(re.search(pat, line) for line in lines):
                problems.append(f"no line matches {pat!r}")
        print(f"{'ok  ' if not problems else 'FAIL'} {name}")
        if problems:
            failed += 1
            for prob in problems:
                print(f"     {prob}")
            print("     --- console ---")
            print("\n".join("     " + line for line in lines[-25:]))
            if p.stderr.strip():
                print("     --- stderr ---\n" + "\n".join("     " + l for l in p.stderr.splitlines()[-10:]))
    print(f"{len(CASES) - failed}/{len(CASES)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
