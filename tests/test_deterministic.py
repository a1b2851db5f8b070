"""Deterministic mode: guest time is instruction counts, so identical runs print identical
consoles; timers, WFI and the RTC follow guest time, not the host's."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from test_machine import IRQ_VECTORS, POWER_OFF, TIMER_GUEST

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def run_console(image: Path, console: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armras", "run", str(image), "--console", str(console),
                           "--timeout", "60", *extra], capture_output=True, text=True, timeout=120, env=ENV, cwd=REPO)


def test_two_deterministic_runs_print_identical_consoles(tmp_path: Path, guest_images: Path) -> None:
    logs = []
    for i in range(2):
        log = tmp_path / f"run{i}.log"
        proc = run_console(guest_images / "ras_ref.elf", log, "--deterministic",
                           "--inject", "sea:pa=0x40fa6000,on=^READY",
                           "--inject", "gpio:pa=0x41234000,at=1.5",
                           "--inject", "arm:mpidr=0x80000000,type=tlb,insn=1200000")
        assert proc.returncode == 0, proc.stderr
        logs.append(log.read_bytes())
    assert logs[0] == logs[1]
    text = logs[0].decode()
    assert "DONE sea=1 gpio=2 ticks=300" in text and "CPER section=arm-processor" in text


def test_deterministic_scenario_logs_are_identical(tmp_path: Path, guest_images: Path) -> None:
    for i in range(2):
        proc = subprocess.run([sys.executable, "-m", "armras", "regress", str(REPO / "scenarios" / "el0_poison.toml"),
                               "--log-dir", str(tmp_path / f"logs{i}")],
                              capture_output=True, text=True, timeout=120, env=ENV, cwd=REPO)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "logs0" / "el0-poison.log").read_bytes() == (tmp_path / "logs1" / "el0-poison.log").read_bytes()


def test_counter_is_instruction_count(board) -> None:
    b = board("""
 mrs x19, cntvct_el0
 mrs x20, cntpct_el0
 mov x2, #1000
1: subs x2, x2, #1
 b.ne 1b
 mrs x21, cntvct_el0
 ldr x3, =0x09010000
 ldr w22, [x3]              // PL031 RTCDR
""" + POWER_OFF, deterministic=True)
    r = b.run()
    assert r.status == 0
    # 1000 iterations of a 2-instruction block at 1 tick per instruction (README): the
    # counter moved by about 2000 ticks (reads are exact to a translation block only).
    assert 2000 <= b.x(21) - b.x(19) <= 2100
    assert b.x(22) == 1_704_067_200                      # 2024-01-01T00:00:00Z at guest time 0.00003 s
    assert r.guest_seconds == r.instructions / 62.5e6   # CNTFRQ 62.5 MHz


def test_timer_interrupts_and_wfi_follow_instruction_time(board) -> None:
    runs = []
    for _ in range(2):
        b = board("""
 adr x2, vectors
 msr vbar_el1, x2
""" + TIMER_GUEST + "\n mov x1, #0\n" + POWER_OFF + IRQ_VECTORS, deterministic=True)
        r = b.run()
        assert r.status == 0
        assert b.x(19) == 100 and b.x(17) == 27          # 100 virtual-timer IRQs acknowledged
        assert b.x(18) / 62.5e6 >= 1.0                   # 1 s of guest time passed (WFI jumps)
        runs.append((r.instructions, r.guest_seconds, b.x(18)))
    assert runs[0] == runs[1]


# --- counter arithmetic (mutants of armras/timing that survived the guest-level tests) ---

class _Counts:
    frequency = 62_500_000

    def __init__(self, virtual: int, physical: int) -> None:
        self.v, self.p = virtual, physical

    def virtual_count(self) -> int:
        return self.v

    def physical_count(self) -> int:
        return self.p


def test_deterministic_counter_registers_by_encoding() -> None:
    # Arm ARM D17.10 (op0, op1, CRn, CRm, op2): CNTPCT_EL0 3,3,14,0,1; CNTVCT_EL0 3,3,14,0,2;
    # CNTPCTSS_EL0 3,3,14,0,5; CNTVCTSS_EL0 3,3,14,0,6 (FEAT_ECV); CNTFRQ_EL0 3,3,14,0,0.
    from armras.timing.guesttime import DeterministicClock

    clock = DeterministicClock(_Counts(virtual=1234, physical=0x1_0000_0005), lambda: [])  # type: ignore[arg-type]
    assert clock.read_counter(3, 3, 14, 0, 2) == 1234
    assert clock.read_counter(3, 3, 14, 0, 6) == 1234
    assert clock.read_counter(3, 3, 14, 0, 1) == 0x1_0000_0005
    assert clock.read_counter(3, 3, 14, 0, 5) == 0x1_0000_0005
    assert clock.read_counter(3, 3, 14, 0, 0) is None        # CNTFRQ: not a count
    wrapped = DeterministicClock(_Counts(virtual=2**64 + 7, physical=2**64 + 9), lambda: [])  # type: ignore[arg-type]
    assert wrapped.read_counter(3, 3, 14, 0, 2) == 7           # 64-bit registers
    assert wrapped.read_counter(3, 3, 14, 0, 1) == 9


def test_instruction_counter_seconds_at_62_5_mhz() -> None:
    # The board's CNTFRQ is 62.5 MHz (QEMU virt's, and guesttime's 16 ns tick).
    from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc

    from armras.timing.guesttime import InstructionCounter

    counter = InstructionCounter(Uc(UC_ARCH_ARM64, UC_MODE_ARM), blocks=None)  # type: ignore[arg-type]
    assert counter.frequency == 62_500_000
    assert counter.seconds(62_500_000) == 1.0
    assert counter.seconds(625) == 1e-5


def test_host_counter_skip_moves_the_virtual_count_and_is_counted() -> None:
    from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc

    from armras.timing.clock import SystemCounter

    counter = SystemCounter(Uc(UC_ARCH_ARM64, UC_MODE_ARM))
    assert counter.seconds(62_500_000) == 1.0 and counter.frequency == 62_500_000
    before = counter.virtual_count()
    counter.skip(10 * counter.frequency)                        # ten idle seconds
    after = counter.virtual_count()
    assert 10 * counter.frequency <= after - before < 11 * counter.frequency
    assert counter.skipped_ticks == 10 * counter.frequency
    counter.skip(-5)                                            # nothing to skip
    assert counter.skipped_ticks == 10 * counter.frequency


class _Blocks:
    """The block hook as the instruction counter sees it: instructions executed so far."""

    def __init__(self) -> None:
        self.n = 0

    def executed(self, pc: int) -> int:
        return self.n


class _Timer:
    def __init__(self, virtual: int | None, physical: int | None) -> None:
        self.next = {True: virtual, False: physical}

    def ticks_until_next(self, virtual: bool) -> int | None:
        return self.next[virtual]


def _instruction_counter(ticks_per_insn: int = 1):
    from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc

    from armras.timing.guesttime import InstructionCounter

    blocks = _Blocks()
    return InstructionCounter(Uc(UC_ARCH_ARM64, UC_MODE_ARM), blocks, ticks_per_insn), blocks  # type: ignore[arg-type]


def test_instruction_counter_counts_instructions_skips_and_restarts() -> None:
    counter, blocks = _instruction_counter()
    assert counter.physical_count() == 0 and counter.virtual_count() == 0 and counter.skipped_ticks == 0
    counter.skip(1)                                 # before any native hook: nothing to update
    blocks.n = 1000
    assert counter.physical_count() == 1001 and counter.virtual_count() == 1001
    counter.restart()                               # guest time zero here
    assert counter.virtual_count() == 0
    blocks.n = 1500
    assert counter.virtual_count() == 500 and counter.physical_count() == 1501
    counter.skip(0)
    counter.skip(-3)
    assert counter.skipped_ticks == 1
    updates: list[tuple[int, int]] = []
    counter.serve_natively(lambda skipped, voff: updates.append((skipped, voff)))
    counter.skip(99)
    assert updates == [(1, 1001), (100, 1001)]
    assert counter.guest_seconds() == (500 + 99) / 62_500_000


def test_instruction_counter_instructions_for_a_tick_count() -> None:
    one, _ = _instruction_counter()
    assert [one.instructions_for(t) for t in (0, 1, 2, 1000)] == [1, 1, 2, 1000]   # at least one
    two, _ = _instruction_counter(ticks_per_insn=2)
    assert [two.instructions_for(t) for t in (1, 2, 3, 5)] == [1, 1, 2, 3]          # rounded up


def test_deterministic_clock_stops_and_idle_skips_go_to_the_nearest_deadline() -> None:
    from armras.timing.guesttime import DeterministicClock

    counter, blocks = _instruction_counter()
    blocks.n = 10_000
    timers = [_Timer(virtual=None, physical=None)]
    clock = DeterministicClock(counter, lambda: timers)
    assert clock.stop_marks(77, None) == []
    assert clock.skip_to_next_deadline(None) is False and counter.skipped_ticks == 0
    timers = [_Timer(virtual=300, physical=None), _Timer(virtual=None, physical=200)]
    assert sorted(clock.stop_marks(77, None)) == [277, 377]
    # an injection due at 10_000 ticks + 0.5 us (31.25 ticks, rounded up): 32 ticks away
    at = (10_000 + 31.25) / 62_500_000
    assert sorted(clock.stop_marks(0, at)) == [32, 200, 300]
    assert clock.skip_to_next_deadline(at) is True
    assert counter.skipped_ticks == 32 and counter.virtual_count() == 10_032
    past = 5_000 / 62_500_000                       # already due: no time to skip, stop at once
    assert sorted(clock.stop_marks(0, past)) == [1, 200, 300]
    assert clock.skip_to_next_deadline(past) is True and counter.skipped_ticks == 32
    assert clock.read_counter(3, 3, 14, 0, 2) == 10_032
    assert clock.rtc_now() == 1_704_067_200 + 10_032 / 62_500_000   # 2024-01-01T00:00:00Z


def test_alarm_thread_ends_when_closed() -> None:
    # One alarm thread per machine: closing the machine must not leave it behind.
    import threading

    from armras.timing.clock import Alarm

    def alarm_threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "armras-alarm")

    before = alarm_threads()
    fired = threading.Event()
    alarm = Alarm(fired.set)
    alarm.arm(0.0)                                   # already due: fires at once
    assert fired.wait(5)
    assert alarm_threads() == before + 1
    alarm.close()
    assert alarm_threads() == before


def test_alarm_disarmed_by_none_and_rearmed_after_firing() -> None:
    # --deterministic arms the wall-clock alarm with None (no --timeout): it must never fire;
    # a deadline equal to one that already fired must fire again.
    import threading
    import time

    from armras.timing.clock import Alarm

    fired: list[float] = []
    event = threading.Event()

    def fire() -> None:
        fired.append(time.monotonic())
        event.set()

    alarm = Alarm(fire)
    try:
        soon = time.monotonic() + 0.05
        alarm.arm(soon)
        alarm.arm(None)                              # disarmed before it was due
        assert not event.wait(0.3) and fired == []
        alarm.arm(soon)                              # in the past now: fires at once
        assert event.wait(5)
        event.clear()
        alarm.arm(soon)                              # the same deadline again, after firing
        assert event.wait(5) and len(fired) == 2
    finally:
        alarm.close()
