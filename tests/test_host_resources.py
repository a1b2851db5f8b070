"""A misbehaving guest must not exhaust the host: no unbounded console line, no flood
of identical warnings, no guest-RAM-sized host buffers in firmware services."""
from __future__ import annotations

import io
import logging
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

from armras.firmware.uefi import Uefi
from armras.board.console import Console
from armras.ratelimit import RateLimiter
from conftest import assemble, make_elf

MiB = 1 << 20


class Sink(io.RawIOBase):
    """A console stream that keeps only a count and a CRC of what it was given."""

    def __init__(self) -> None:
        self.size = 0
        self.crc = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:    # type: ignore[override]
        self.size += len(data)
        self.crc = zlib.crc32(data, self.crc)
        return len(data)


def test_console_line_without_newline_stays_bounded() -> None:
    stream = Sink()
    console = Console(stream)   # type: ignore[arg-type]
    lengths: list[int] = []
    console.watch(lambda line: lengths.append(len(line) if set(line) == {"A"} else -1))
    chunk = b"A" * 1000
    tracemalloc.start()
    try:
        for _ in range(10_000):                    # 10 MB, never a newline
            console.write(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Every byte still reaches the console stream (a 4 KiB line at a time; the unfinished
    # rest at the flush the run loop does when the guest idles or stops)...
    assert 0 <= 10_000_000 - stream.size <= 4096
    console.flush()
    assert stream.size == 10_000_000 and stream.crc == zlib.crc32(b"A" * 10_000_000)
    # ...while triggers see 4 KiB lines and armras holds on to nothing more.
    assert peak < MiB, f"{peak} bytes"
    assert lengths == [4096] * (10_000_000 // 4096)
    lines: list[str] = []
    console.watch(lines.append)
    console.write(b"tail\r\nnext")
    assert lines == ["A" * (10_000_000 % 4096) + "tail"]
    console.write(b"\n")
    assert lines[-1] == "next" and list(console.recent)[-2:] == lines


def test_console_triggers_still_see_lines_split_across_writes() -> None:
    console = Console(io.BytesIO())
    lines: list[str] = []
    console.watch(lines.append)
    for byte in b"PADDR=0x4100\n0000 x\n":
        console.write(bytes([byte]))
    assert lines == ["PADDR=0x4100", "0000 x"]


def test_rate_limiter_summarizes_repeats() -> None:
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("armras.test.ratelimit")
    logger.propagate = False
    logger.addHandler(Collect())
    now = [0.0]
    limiter = RateLimiter(logger, burst=2, interval=10.0, clock=lambda: now[0])
    for i in range(100):
        limiter.warning("k", "call %d", i)
        now[0] += 0.01
    limiter.warning("other", "different")
    assert records == ["call 0", "call 1", "different"]
    now[0] = 20.0
    limiter.warning("k", "call %d", 100)            # the interval passed: summary now
    assert records[-1] == "call 100 ... repeated 99 times"
    limiter.warning("k", "call %d", 101)
    limiter.flush()
    assert records[-1] == "call 101 ... repeated 1 times"
    limiter.flush()
    assert len(records) == 5                        # nothing new to summarize


def test_unserviced_hvc_flood_prints_a_few_lines(tmp_path: Path) -> None:
    guest = tmp_path / "hvc.elf"
    guest.write_bytes(make_elf(assemble("""
 ldr x5, =50000
1: hvc #0x1234
 subs x5, x5, #1
 b.ne 1b
 ldr x0, =0x84000008
 mov x1, #0
 hvc #0
 .ltorg
""")))
    proc = subprocess.run([sys.executable, "-m", "armras", "run", str(guest), "--timeout", "120"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) <= 10, lines[:20]
    assert sum("HVC #0x1234" in line and "no firmware service" in line for line in lines) >= 3
    summaries = [line for line in lines if "repeated" in line]
    assert summaries and summaries[-1].endswith("times")
    total = 3 + sum(int(line.rsplit(" ", 2)[-2]) for line in summaries)
    assert total == 50000


SCRATCH = 0x4100_0000
BS = 96                         # EFI_SYSTEM_TABLE.BootServices
CALCULATE_CRC32 = 24 + 8 * 40   # EFI_BOOT_SERVICES slots, in the UEFI spec's order
COPY_MEM = 24 + 8 * 41
SET_MEM = 24 + 8 * 42


def call(offset: int, args: str, save: str) -> str:
    return f"""
 ldr x9, [x20, #{BS}]
 ldr x9, [x9, #{offset}]
{args}
 blr x9
 mov {save}, x0
"""


def test_uefi_memory_services_check_first_and_work_in_bounded_chunks(board) -> None:
    src = """
 mov x20, x1
 ldr x3, =0x40400000
 mov sp, x3
""" + call(SET_MEM, " ldr x0, =0x41000000\n ldr x1, =0x20000000\n mov x2, #0x5a", "x22") + \
        call(SET_MEM, " ldr x0, =0x41000000\n ldr x1, =0x4000000\n mov x2, #0x1a5", "x23") + \
        call(COPY_MEM, " ldr x0, =0x45000000\n ldr x1, =0x41000000\n ldr x2, =0x4000000", "x24") + \
        call(COPY_MEM, " ldr x0, =0x45000000\n ldr x1, =0x41000000\n ldr x2, =0x20000000", "x25") + \
        call(CALCULATE_CRC32, " ldr x0, =0x45000000\n ldr x1, =0x4000000\n ldr x2, =0x40500000", "x26") + \
        call(CALCULATE_CRC32, " ldr x0, =0x45000000\n ldr x1, =0x20000000\n ldr x2, =0x40500000", "x27") + """
 ldr x0, =0x84000008
 mov x1, #0
 hvc #0
 .ltorg
"""
    b = board(src)
    m = b.machine
    uefi = Uefi(m)
    m.cpu.set_x(1, uefi.system_table)
    tracemalloc.start()
    try:
        result = b.run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.status == 0
    invalid = (1 << 63) | 2
    assert (b.x(22), b.x(25), b.x(27)) == (invalid, invalid, invalid)   # 512 MiB from 0x41000000: past RAM
    assert (b.x(23), b.x(24), b.x(26)) == (0, 0, 0)
    assert peak < 8 * MiB, f"peak host allocation {peak / MiB:.1f} MiB"
    assert m.mem.read(0x4100_0000, 16) == b"\xa5" * 16
    assert m.mem.read(0x4500_0000 + 64 * MiB - 16, 16) == b"\xa5" * 16
    assert m.mem.read(0x4500_0000 + 64 * MiB, 16) == bytes(16)         # not one byte further
    assert m.mem.read_u32(0x4050_0000) == zlib.crc32(b"\xa5" * 64 * MiB)


def test_uefi_copymem_overlapping_ranges_behave_as_memmove(board) -> None:
    b = board("1: b 1b\n")
    uefi = Uefi(b.machine)
    pattern = bytes(i * 7 & 0xFF for i in range(3 * MiB + 123))
    for dst, src in ((SCRATCH + 1000, SCRATCH), (SCRATCH, SCRATCH + 1000)):
        b.machine.mem.write(SCRATCH, pattern + bytes(2000))
        before = bytearray(b.machine.mem.read(SCRATCH, len(pattern) + 2000))
        assert uefi._bs_CopyMem(dst, src, len(pattern)) == 0
        expected = before[:]
        expected[dst - SCRATCH:dst - SCRATCH + len(pattern)] = before[src - SCRATCH:src - SCRATCH + len(pattern)]
        assert b.machine.mem.read(SCRATCH, len(expected)) == bytes(expected)
