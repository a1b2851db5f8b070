"""Keep it fixed: one guest image does everything a hostile guest did to armras, in order.

`guest_images/build/hostile.elf` prints 100 KiB without a newline, calls an unserviced
`hvc #0x7777` 20,000 times, stores to flash, calls a function pointer into the UART,
arms the physical timer 9,000 years ahead, and loads from an unassigned address. It
checks every result against the Arm architecture itself and powers off with status 0
only if all of them matched. Here the host side is checked: what reached the console,
what armras logged, and what the run cost in memory.
"""
from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from armras.board.machine import Machine, MachineConfig
from conftest import REPO, assemble, make_elf

MiB = 1 << 20
LONG_LINE = bytes(0x30 + (i & 63) for i in range(100 * 1024))   # '0'..'o', as hostile.c writes it
STEPS = ("long-line", "hvc-flood", "flash-store", "device-call", "far-timer", "unassigned")
HVC_CALLS = 20_000


def run_cli(image: Path, console: Path) -> tuple[int, str, int]:
    """`python -m armras -v run IMAGE`: exit status, stderr, and the child's own peak RSS (KiB)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "armras", "-v", "run", str(image), "--timeout", "120",
                             "--console", str(console)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    try:
        stderr = proc.stderr.read().decode(errors="replace")
        _, wait_status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        raise
    proc.returncode = os.waitstatus_to_exitcode(wait_status)
    proc.stderr.close()
    return proc.returncode, stderr, int(usage.ru_maxrss)


def test_hostile_guest_survives_and_the_host_stays_bounded(guest_images: Path, tmp_path: Path) -> None:
    console_file = tmp_path / "console.txt"
    status, stderr, peak_kib = run_cli(guest_images / "hostile.elf", console_file)
    console = console_file.read_bytes()
    text = console.decode("ascii", "replace")
    assert "Traceback" not in stderr, stderr[-3000:]
    assert status == 0, text[-3000:] + stderr[-3000:]

    # The guest's own verdicts: every step saw what the architecture says, then the summary.
    for step in STEPS:
        assert re.search(rf"^HOSTILE {step} -> OK$", text, re.MULTILINE), step
    assert re.search(r"^HOSTILE ok=6 fail=0$", text, re.MULTILINE), text[-2000:]
    # The exact syndromes, as printed by the guest's handler (KVM's injected SEA syndrome
    # from EL1: data abort EC 0x25 / instruction abort EC 0x21, IL, FnV, DFSC/IFSC 0x10).
    assert re.search(r"^HOSTILE flash-store taken=1 vec=0x200 ESR=0x96000050 ", text, re.MULTILINE)
    assert re.search(r"^HOSTILE device-call taken=1 vec=0x200 ESR=0x86000010 ELR=0x9000000 ", text, re.MULTILINE)
    assert re.search(r"^HOSTILE unassigned taken=1 vec=0x200 ESR=0x96000010 ", text, re.MULTILINE)
    assert "HOSTILE hvc-flood calls=20000 not_supported=20000 " in text

    # (a) The 100 KiB line reached the console byte for byte, ended by its newline.
    header = b"HOSTILE long-line bytes=102400\n"
    start = console.index(header) + len(header)
    assert console[start:start + len(LONG_LINE) + 1] == LONG_LINE + b"\n"
    assert console.count(b"\n") == text.count("\n") == len(console.splitlines())
    assert max(len(line) for line in console.splitlines()) == 100 * 1024

    # (b) 20,000 unserviced calls: three warnings, the rest summarized with their count.
    lines = stderr.splitlines()
    warned = [line for line in lines if "HVC #0x7777" in line and "no firmware service" in line]
    single = [line for line in warned if "repeated" not in line]
    summaries = [line for line in warned if "repeated" in line]
    assert len(single) == 3, warned
    assert 1 <= len(summaries) <= 3, summaries
    assert 3 + sum(int(re.search(r"repeated (\d+) times$", s).group(1)) for s in summaries) == HVC_CALLS
    assert len(lines) <= 20, lines[:40]          # -v: plus the bus errors, SEA entries, power off

    # Bounded memory: the whole run costs no more than a guest that powers off at once.
    idle = tmp_path / "idle.elf"
    idle.write_bytes(make_elf(assemble(" ldr x0, =0x84000008\n mov x1, #0\n hvc #0\n .ltorg\n")))
    idle_status, idle_err, idle_kib = run_cli(idle, tmp_path / "idle.txt")
    assert idle_status == 0, idle_err
    assert peak_kib - idle_kib < 16 * 1024, f"hostile peak RSS {peak_kib} KiB vs idle guest {idle_kib} KiB"


class Sink(io.RawIOBase):
    """A console stream that keeps nothing but the newline-free runs' lengths."""

    def __init__(self) -> None:
        self.size = 0
        self.run = 0
        self.longest = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:    # type: ignore[override]
        self.size += len(data)
        for i, part in enumerate(bytes(data).split(b"\n")):
            self.run = len(part) if i else self.run + len(part)
            self.longest = max(self.longest, self.run)
        return len(data)


@pytest.mark.parametrize("deterministic", [False, True])
def test_hostile_guest_in_process_holds_on_to_nothing(guest_images: Path, caplog, deterministic: bool) -> None:
    # --deterministic turns the far CNTP deadline into an instruction stop: a second path.
    sink = Sink()
    m = Machine(MachineConfig(console=sink, timeout=120, deterministic=deterministic))  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING, logger="armras")
    tracemalloc.start()
    try:
        m.load_elf(guest_images / "hostile.elf")
        r = m.run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        m.close()
    assert r.status == 0
    assert sink.longest == 100 * 1024
    # No buffer grew with the 100 KiB line or the 20,000 calls (the console keeps 4 KiB
    # lines and 40 recent ones; the rate limiter a counter per kind of warning).
    assert peak < 2 * MiB, f"peak Python allocation {peak / MiB:.1f} MiB"
    hvc = [rec.getMessage() for rec in caplog.records if "HVC #0x7777" in rec.getMessage()]
    assert len(hvc) == 4 and hvc[-1].endswith("repeated 19997 times"), hvc
