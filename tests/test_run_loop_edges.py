"""Run-loop edge cases a guest or a user can drive: far deadlines, pauses, async injections."""
from __future__ import annotations

import pytest

from armras.cpu import GuestFault
from armras.machine import RunawayGuest

FAR_DEADLINE = """
 mov x0, #-1                // CVAL = 2^64 - 1: the timer fires in ~9000 years
 msr cntp_cval_el0, x0
 mov x0, #1                 // ENABLE, not masked
 msr cntp_ctl_el0, x0
 msr cntv_cval_el0, x0      // and a virtual timer already due (but its PPI is not enabled in the GIC)
 msr cntv_ctl_el0, x0
1: wfi
 b 1b
"""


@pytest.mark.parametrize("deterministic", [False, True])
def test_guest_deadline_at_the_end_of_time_is_not_a_crash(board, deterministic):
    b = board(FAR_DEADLINE, timeout=1.0, deterministic=deterministic)
    with pytest.raises((RunawayGuest, GuestFault)) as info:
        b.run()
    # Either the run times out (exit 124) or the guest is reported as waiting for
    # nothing (126): a clear verdict, never an OverflowError from a host sleep.
    assert info.value.exit_code in (124, 126)
    assert "OverflowError" not in str(info.value)


def test_stop_freezes_guest_time_and_scheduled_injections(board):
    import threading
    import time

    b = board("""
1: add x15, x15, #1
 b 1b
""", timeout=20.0)
    m = b.machine
    fired: list[float] = []
    m.at_guest_time(0.4, lambda: fired.append(m.counter.guest_seconds()), "test event")
    seen: dict[str, float] = {}

    def driver() -> None:
        while m.instructions == 0 or m.counter.guest_seconds() < 0.05:
            time.sleep(0.01)
        m.defer(m.pause, "test: stop")
        while not m.paused:
            time.sleep(0.01)
        seen["paused_at"] = m.counter.guest_seconds()
        seen["insns_paused"] = m.instructions
        time.sleep(0.8)                       # twice the event's guest time, in host time
        seen["after_pause"] = m.counter.guest_seconds()
        seen["insns_after"] = m.instructions
        seen["fired_during_pause"] = len(fired)
        m.defer(m.resume, "test: cont")
        while m.counter.guest_seconds() < seen["after_pause"] + 0.5:
            time.sleep(0.01)
        m.defer(lambda: m.power_off(0, "test done"), "test: quit")

    t = threading.Thread(target=driver)
    t.start()
    r = b.run()
    t.join()
    assert r.status == 0
    assert seen["after_pause"] - seen["paused_at"] < 0.005      # frozen, not 0.8 s later
    assert seen["insns_after"] == seen["insns_paused"]           # and the CPU really stopped
    assert seen["fired_during_pause"] == 0                       # at=0.4 did not fire while stopped
    assert len(fired) == 1 and fired[0] >= 0.4                   # it fired after cont, on guest time
    assert r.guest_seconds < r.wall_seconds - 0.7                # the pause is not guest time
