"""The EL1 physical and virtual generic timers (Arm ARM DDI 0487 D11.2, registers
D17.10 CNTP_/CNTV_{CTL,CVAL,TVAL}_EL0), against a counter the test controls, and on a
running board: deadlines raise PPI 30 / 27, and in deterministic mode the counter moves
one tick per instruction."""
from __future__ import annotations

import pytest

from armras.devices.timer import GenericTimer
from test_machine import POWER_OFF

# Register selectors (op0=3, op1=3, CRn=14): CRm 2 = physical, 3 = virtual timer;
# op2 0 = TVAL, 1 = CTL, 2 = CVAL (Arm ARM D17.10).
PHYS, VIRT = 2, 3
TVAL, CTL, CVAL = 0, 1, 2
ENABLE, IMASK, ISTATUS = 1, 2, 4
PPI_PHYS, PPI_VIRT = 30, 27   # Arm BSA / QEMU virt: non-secure EL1 physical 30, virtual 27


class FakeCounter:
    frequency = 62_500_000

    def __init__(self) -> None:
        self.phys = 0
        self.cntvoff = 0

    def physical_count(self) -> int:
        return self.phys

    def virtual_count(self) -> int:
        return self.phys - self.cntvoff


class Lines:
    def __init__(self) -> None:
        self.level: dict[int, bool] = {}

    def set_level(self, intid: int, level: bool) -> None:
        self.level[intid] = level

    def pulse(self, intid: int) -> None:
        raise AssertionError("the timer outputs are level-sensitive")


@pytest.fixture
def timer():
    counter, lines = FakeCounter(), Lines()
    t = GenericTimer(counter, lines, phys_intid=PPI_PHYS, virt_intid=PPI_VIRT)
    return t, counter, lines


@pytest.mark.parametrize("crm", [PHYS, VIRT])
def test_tval_write_is_sign_extended_and_reads_back_the_distance(timer, crm: int) -> None:
    t, counter, _ = timer
    counter.phys, counter.cntvoff = 50_000, 10_000
    now = 50_000 if crm == PHYS else 40_000
    # D17.10.x: a TVAL write sets CVAL = count + SignExtend(TVAL[31:0]).
    t.write(crm, TVAL, 1000)
    assert t.read(crm, CVAL) == now + 1000
    assert t.read(crm, TVAL) == 1000
    t.write(crm, TVAL, 0xFFFF_FF9C)                # -100
    assert t.read(crm, CVAL) == now - 100
    t.write(crm, TVAL, 0xABCD_0000_0000_0010)      # bits [63:32] are ignored
    assert t.read(crm, CVAL) == now + 0x10
    # A read returns (CVAL - count)[31:0], zero-extended: negative once the deadline passed.
    t.write(crm, CVAL, now + 300)
    assert t.read(crm, TVAL) == 300
    counter.phys += 1000
    assert t.read(crm, TVAL) == 0xFFFF_FD44       # 300 - 1000 = -700
    assert t.read(crm, CVAL) == now + 300         # reading TVAL does not change CVAL


def test_cval_is_64_bit_and_compared_unsigned(timer) -> None:
    t, counter, _ = timer
    counter.phys = 0x1_0000_0000
    t.write(VIRT, CVAL, 0xFFFF_FFFF_FFFF_FFFF)
    assert t.read(VIRT, CVAL) == 0xFFFF_FFFF_FFFF_FFFF
    t.write(VIRT, CTL, ENABLE)
    assert t.read(VIRT, CTL) == ENABLE            # far future: condition not met
    t.write(VIRT, CVAL, 0xFFFF_FFFF)              # below the count, high word differs
    assert t.read(VIRT, CTL) == ENABLE | ISTATUS


def test_ctl_istatus_imask_and_the_interrupt_line(timer) -> None:
    t, counter, lines = timer
    counter.phys = 1000
    t.write(PHYS, CVAL, 1500)
    t.write(PHYS, CTL, ENABLE)
    assert t.read(PHYS, CTL) == ENABLE and lines.level[PPI_PHYS] is False
    counter.phys = 1500                           # condition: count >= CVAL
    t.update()
    assert t.read(PHYS, CTL) == ENABLE | ISTATUS and lines.level[PPI_PHYS] is True
    # IMASK masks the output, not ISTATUS.
    t.write(PHYS, CTL, ENABLE | IMASK)
    assert t.read(PHYS, CTL) == ENABLE | IMASK | ISTATUS and lines.level[PPI_PHYS] is False
    # ISTATUS is read-only.
    t.write(PHYS, CTL, ENABLE | ISTATUS)
    assert t.read(PHYS, CTL) == ENABLE | ISTATUS and lines.level[PPI_PHYS] is True
    # Moving the deadline forward drops the line (the handler's usual acknowledgement).
    t.write(PHYS, TVAL, 100)
    assert t.read(PHYS, CTL) == ENABLE and lines.level[PPI_PHYS] is False
    # Disabled: no ISTATUS, no interrupt, whatever the comparison.
    t.write(PHYS, CVAL, 0)
    t.write(PHYS, CTL, 0)
    assert t.read(PHYS, CTL) & ISTATUS == 0 and lines.level[PPI_PHYS] is False


def test_physical_and_virtual_timers_are_independent(timer) -> None:
    t, counter, lines = timer
    counter.phys, counter.cntvoff = 10_000, 4_000   # virtual count 6000
    t.write(VIRT, CVAL, 7_000)
    t.write(PHYS, CVAL, 7_000)
    t.write(VIRT, CTL, ENABLE)
    t.write(PHYS, CTL, ENABLE)
    # Physical count 10000 >= 7000 fires; virtual 6000 does not.
    assert t.read(PHYS, CTL) & ISTATUS and not t.read(VIRT, CTL) & ISTATUS
    assert lines.level == {PPI_PHYS: True, PPI_VIRT: False}
    assert t.ticks_until_next(virtual=True) == 1000
    counter.phys = 11_000
    t.update()
    assert lines.level == {PPI_PHYS: True, PPI_VIRT: True}


def test_timer_handles_only_the_el0_timer_registers(timer) -> None:
    t, _, _ = timer
    assert t.handles(3, 3, 14, 2) and t.handles(3, 3, 14, 3)     # CNTP_*, CNTV_*
    assert not t.handles(2, 3, 14, 2)          # op0 2: debug registers
    assert not t.handles(3, 4, 14, 2)          # CNTHP_*_EL2
    assert not t.handles(3, 3, 13, 2)
    assert not t.handles(3, 3, 14, 0)          # CNTFRQ/CNTPCT/CNTVCT: the counter, not a timer
    assert not t.handles(3, 3, 14, 1)          # CNTKCTL_EL1 (op1 0) / CNTPS
    assert t.read(PHYS, 3) == 0                # op2 3 is not a timer register
    t.write(VIRT, CTL, IMASK)                  # disabled: ISTATUS reads 0, IMASK as written
    assert t.read(VIRT, CTL) == IMASK
    t.write(VIRT, CTL, 0)
    assert t.read(VIRT, CTL) == 0


def test_timer_ticks_until_next_deadline(timer) -> None:
    t, counter, _ = timer
    counter.phys, counter.cntvoff = 1000, 400             # virtual count 600
    assert t.ticks_until_next(False) is None and t.ticks_until_next(True) is None
    t.write(PHYS, CVAL, 1500)
    assert t.ticks_until_next(False) is None              # not enabled
    t.write(PHYS, CTL, ENABLE)
    assert t.ticks_until_next(False) == 500
    assert t.ticks_until_next(True) is None               # the virtual timer is off
    t.write(PHYS, CTL, ENABLE | IMASK)
    assert t.ticks_until_next(False) is None              # masked: no interrupt to wait for
    t.write(PHYS, CTL, ENABLE)
    t.write(VIRT, CVAL, 700)
    t.write(VIRT, CTL, ENABLE)
    assert t.ticks_until_next(True) == 100                # against the virtual count
    counter.phys = 1500                                   # physical deadline reached
    assert t.ticks_until_next(False) is None
    counter.phys = 2000
    assert t.ticks_until_next(False) is None


def test_timer_write_notifies_and_describe_names_both_timers(timer) -> None:
    counter, lines = FakeCounter(), Lines()
    changes: list[int] = []
    t = GenericTimer(counter, lines, on_change=lambda: changes.append(1), phys_intid=30, virt_intid=27)
    counter.phys = 0x40
    t.write(PHYS, CVAL, 0x50)
    t.write(PHYS, CTL, 0xFF)
    assert len(changes) == 2
    assert t.read(PHYS, CTL) == ENABLE | IMASK             # only ENABLE and IMASK are stored
    # the text of the "idle with nothing that could wake it" error
    assert t.describe() == "phys timer CTL=0x3 CVAL=0x50 count=0x40, virt timer CTL=0x0 CVAL=0x0 count=0x40"


# --- on the board ----------------------------------------------------------------------

def test_physical_timer_deadline_raises_ppi_30(board) -> None:
    b = board("""
 adr x2, vectors
 msr vbar_el1, x2
 ldr x6, =0x08000000
 ldr x8, =0x08010000
 mov w7, #1
 str w7, [x6]                 // GICD_CTLR
 str w7, [x8]                 // GICC_CTLR
 mov w7, #0xff
 str w7, [x8, #4]             // GICC_PMR
 mov w7, #(1 << 30)
 str w7, [x6, #0x100]         // enable PPI 30
 mov x19, #0
 ldr x9, =0x7fffffff          // ~34 s away: certainly not expired when read back,
 msr cntp_tval_el0, x9        // however slow the host is
 mov x7, #1
 msr cntp_ctl_el0, x7
 mrs x23, cntp_ctl_el0        // not yet expired
 ldr x9, =62500               // then 1 ms
 msr cntp_tval_el0, x9
1: wfi                        // IRQs masked: WFI still wakes on the pending PPI, and the
 msr daifclr, #2              // IRQ is taken here, never between an unmask and the WFI
 isb                          // (a slow host would otherwise take it before the WFI,
 msr daifset, #2              // return to the WFI and wait forever)
 cbz x19, 1b
 mov x1, #0
""" + POWER_OFF + """
 .balign 0x800
vectors:
 .skip 0x280
 mrs x15, cntp_ctl_el0        // ENABLE | ISTATUS while the interrupt is asserted
 mrs x16, cntp_tval_el0       // deadline passed: TVAL is zero or negative
 ldr w10, [x8, #0xc]          // GICC_IAR
 mov x17, x10
 mov x7, #3                   // mask the timer output (IMASK) as the handler's ack
 msr cntp_ctl_el0, x7
 mrs x14, cntp_ctl_el0
 str w10, [x8, #0x10]         // GICC_EOIR
 add x19, x19, #1
 eret
 .ltorg
""")
    r = b.run()
    assert r.status == 0
    assert b.x(19) == 1 and b.x(17) == 30
    assert b.x(23) == ENABLE
    assert b.x(15) == ENABLE | ISTATUS
    tval = b.x(16)
    assert tval == 0 or 0x8000_0000 <= tval <= 0xFFFF_FFFF   # (CVAL - count)[31:0] <= 0
    assert b.x(14) == ENABLE | IMASK | ISTATUS


def test_guest_tval_write_of_a_negative_value(board) -> None:
    b = board("""
 mov x2, #1000                // let the count pass 100 first: CVAL is unsigned 64-bit
1: subs x2, x2, #1
 b.ne 1b
 movn x9, #99                 // -100: 0xffffffffffffff9c
 msr cntv_tval_el0, x9
 mrs x19, cntvct_el0
 mrs x20, cntv_cval_el0
 mrs x21, cntv_tval_el0
 mov x7, #3                   // ENABLE | IMASK
 msr cntv_ctl_el0, x7
 mrs x22, cntv_ctl_el0
""" + POWER_OFF, deterministic=True)
    assert b.run().status == 0
    assert b.x(19) >= 2000
    # CVAL = count - 100 (sign-extended): far below 2^32, and already expired.
    assert b.x(19) - 100 - 50 <= b.x(20) <= b.x(19) - 100
    assert 0xFFFF_FF00 <= b.x(21) <= 0xFFFF_FF9C      # TVAL reads back negative, 32 bits
    assert b.x(22) == ENABLE | IMASK | ISTATUS


def test_deterministic_counter_moves_one_tick_per_instruction(board) -> None:
    # README/guesttime: in deterministic mode guest time is the instruction count at 1
    # tick per instruction (62.5 MHz, a 62.5 MIPS guest).  Two loops that differ by
    # exactly 2000 two-instruction iterations must differ by 4000 counter ticks.
    # The same subroutine measures both loops, so both see the same block structure.
    b = board("""
 mov x2, #1000
 bl measure
 mov x20, x0
 mov x2, #3000
 bl measure
 mov x21, x0
 mrs x22, cntvct_el0
 mrs x23, cntpct_el0
""" + POWER_OFF + """
measure:
 mrs x10, cntvct_el0
1: subs x2, x2, #1
 b.ne 1b
 mrs x11, cntvct_el0
 sub x0, x11, x10
 ret
 .ltorg
""", deterministic=True)
    r = b.run()
    assert r.status == 0
    short, long = b.x(20), b.x(21)
    assert long - short == 4000
    assert 2000 <= short <= 2010
    # Guest seconds are instructions / 62.5 MHz.
    assert r.guest_seconds == pytest.approx(r.instructions / 62.5e6)
    assert b.x(23) >= b.x(22)


# --- the system counter on its own (what mutation testing found unchecked) ------------------

class _CounterRegs:
    """Unicorn's counter registers as SystemCounter reads and writes them (op0, op1, CRn, CRm, op2)."""

    CNTFRQ, CNTPCT, CNTVCT, CNTVOFF = (3, 3, 14, 0, 0), (3, 3, 14, 0, 1), (3, 3, 14, 0, 2), (3, 4, 14, 0, 3)

    def __init__(self, frequency: int) -> None:
        self.values = {self.CNTFRQ: frequency, self.CNTPCT: 5000, self.CNTVCT: 31_250_000}
        self.writes: list[tuple[tuple[int, ...], int]] = []

    def sysreg(self, reg: tuple[int, ...]) -> int:
        return self.values.get(reg, 0)

    def set_sysreg(self, reg: tuple[int, ...], value: int) -> None:
        self.writes.append((reg, value))


@pytest.mark.parametrize("cntfrq, frequency", [(1_000_000_000, 1_000_000_000), (0, 62_500_000)])
def test_counter_frequency_is_cntfrq_or_qemus_default(monkeypatch: pytest.MonkeyPatch, cntfrq: int,
                                                      frequency: int) -> None:
    from armras.timing import clock

    regs = _CounterRegs(cntfrq)
    monkeypatch.setattr(clock, "Regs", lambda uc: regs)
    assert clock.SystemCounter(None).frequency == frequency      # type: ignore[arg-type]


def test_skipped_ticks_add_up_and_a_cpu_switched_in_gets_the_boards_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    from armras.timing import clock

    regs = _CounterRegs(62_500_000)
    monkeypatch.setattr(clock, "Regs", lambda uc: regs)
    counter = clock.SystemCounter(None)                           # type: ignore[arg-type]
    assert regs.writes == [(regs.CNTVOFF, 5000)]                   # guest time starts at zero
    counter.skip(300)
    counter.skip(0)
    counter.skip(-5)                                              # nothing to skip
    counter.skip(199)
    counter.skip(1)
    assert counter.skipped_ticks == 500
    regs.writes.clear()
    counter.load_cpu()
    assert regs.writes == [(regs.CNTVOFF, 4500)]
    # Ticks as seconds at 62.5 MHz; the guest's virtual count (31.25 M ticks) is half a second.
    assert counter.seconds(125_000_000) == 2.0 and counter.guest_seconds() == 0.5


def test_alarm_fires_once_at_its_deadline_and_not_when_disarmed() -> None:
    import threading
    import time

    from armras.timing.clock import Alarm

    fired = threading.Event()
    count = []

    def fire() -> None:
        count.append(time.monotonic())
        fired.set()

    alarm = Alarm(fire)
    try:
        alarm.arm(time.monotonic() + 60)
        alarm.disarm()
        alarm.arm(None)
        time.sleep(0.05)
        assert not count
        deadline = time.monotonic() + 0.05
        alarm.arm(deadline)
        alarm.arm(deadline)                                       # unchanged: no second wake-up
        assert fired.wait(10)
        time.sleep(0.1)
        assert len(count) == 1 and count[0] >= deadline
        # It can be armed again after firing, and after a disarm it wakes up from.
        fired.clear()
        alarm.arm(time.monotonic() + 0.01)
        assert fired.wait(10) and len(count) == 2
        fired.clear()
        alarm.arm(time.monotonic() + 0.1)
        alarm.disarm()
        time.sleep(0.3)                                           # the thread woke at 0.1 s to nothing
        assert len(count) == 2
        alarm.arm(time.monotonic() + 0.01)
        assert fired.wait(10) and len(count) == 3
        # One daemon thread, named for py-spy and gdb, that ends on close().
        assert alarm._thread.name == "armras-alarm" and alarm._thread.daemon
    finally:
        alarm.close()
    assert not alarm._thread.is_alive()
