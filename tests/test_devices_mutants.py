"""Device register behaviour the other device tests leave open (mutants of
armras/devices that survived them): PL011 reset values and read-back registers, PL031
register masks, the GED's other offsets, the generic timer's register selection and
next-deadline arithmetic.

Values are the TRMs' and QEMU's, written out: PL011 DDI 0183 3.2 (register map and reset
values; QEMU hw/char/pl011.c pl011_reset: CR 0x300, IFLS 0x12, FR 0x90), PL031 DDI 0224
3.2, ACPI GED (QEMU hw/acpi/generic_event_device.c: only ESEL at offset 0 reads), Arm ARM
DDI 0487 D17.10 (CNTP_*/CNTV_* are op0 3, op1 3, CRn 14, CRm 2/3).
"""
from __future__ import annotations

import pytest

from armras.devices.ged import Ged
from armras.devices.pl011 import Pl011
from armras.devices.pl031 import Pl031
from armras.devices.timer import GenericTimer
from test_timer import FakeCounter, Lines
from test_uart_rtc_ged import Clock, Line

# PL011 (DDI 0183 table 3-1)
DR, RSR, FR, ILPR, IBRD, FBRD, LCR_H, CR, IFLS = 0x000, 0x004, 0x018, 0x020, 0x024, 0x028, 0x02C, 0x030, 0x034
IMSC, RIS, MIS, ICR, DMACR = 0x038, 0x03C, 0x040, 0x044, 0x048
RXIM, TXIM = 1 << 4, 1 << 5
UART_INTID = 33

# PL031 (DDI 0224 table 3-1)
RTC_DR, RTC_MR, RTC_LR, RTC_CR, RTC_IMSC, RTC_RIS, RTC_MIS, RTC_ICR = range(0, 0x20, 4)

# Generic timer selectors (Arm ARM D17.10)
PHYS, VIRT = 2, 3
TVAL, CTL, CVAL = 0, 1, 2
ENABLE, IMASK = 1, 2


# --- PL011 -----------------------------------------------------------------------------

def test_pl011_reset_values_and_read_back_registers() -> None:
    out: list[bytes] = []
    u = Pl011(out.append, Line(), UART_INTID)
    # DDI 0183 table 3-1 reset values (as QEMU's pl011_reset).
    assert u.read(CR, 4) == 0x300              # TXE | RXE, UART disabled
    assert u.read(IFLS, 4) == 0x12             # both FIFO levels 1/2
    assert u.read(RSR, 4) == 0
    for off in (ILPR, IBRD, FBRD, LCR_H, DMACR, IMSC, RIS, MIS):
        assert u.read(off, 4) == 0, hex(off)
    # Linux's amba-pl011 programs the baud divisors and line control and reads them back.
    u.write(IBRD, 4, 0x27)
    u.write(FBRD, 4, 0x04)
    u.write(LCR_H, 4, 0x70)                    # 8 bits, FIFOs enabled
    u.write(CR, 4, 0x301)
    assert (u.read(IBRD, 4), u.read(FBRD, 4), u.read(LCR_H, 4), u.read(CR, 4)) == (0x27, 0x04, 0x70, 0x301)
    # An offset outside the map reads as zero and a write there changes nothing.
    u.write(0x800, 4, 0xFF)
    assert u.read(0x800, 4) == 0
    assert out == []                           # none of that transmitted anything


def test_pl011_receive_reads_zero_when_empty_and_interrupt_follows_the_mask() -> None:
    line = Line()
    u = Pl011(lambda b: None, line, UART_INTID)
    assert u.read(DR, 4) == 0                  # empty FIFO
    u.write(IMSC, 4, 0xFFFF_FFFF)
    assert u.read(IMSC, 4) == 0x7FF            # IMSC is 11 bits wide (3.3.10)
    u.feed(b"z")
    assert line.level(UART_INTID) is True
    assert u.read(DR, 4) == ord("z")
    assert u.read(RIS, 4) & RXIM == 0
    assert line.level(UART_INTID) is False
    u.write(DR, 4, ord("a"))                   # TX interrupt raised...
    u.feed(b"b")                               # ...and still raised next to RX
    assert u.read(RIS, 4) & (RXIM | TXIM) == RXIM | TXIM


# --- PL031 -----------------------------------------------------------------------------

def test_pl031_register_widths_and_unmapped_offsets() -> None:
    clock = Clock(2000.0)
    rtc = Pl031(now=clock)
    rtc.write(RTC_IMSC, 4, 0xFFFF_FFFF)
    assert rtc.read(RTC_IMSC, 4) == 1          # one interrupt: bit 0 only
    rtc.write(RTC_MR, 4, 0x1_0000_0005)        # 32-bit registers
    assert rtc.read(RTC_MR, 4) == 5
    rtc.write(RTC_LR, 4, 0x1_0000_0010)
    assert rtc.read(RTC_DR, 4) == 0x10
    assert rtc.read(0x20, 4) == 0 and rtc.read(0xFDC, 4) == 0
    rtc.write(RTC_LR, 4, 0xFFFF_FFFF)          # the counter wraps at 32 bits
    clock.t += 2
    assert rtc.read(RTC_DR, 4) == 1


def test_pl031_icr_writing_zero_keeps_the_interrupt() -> None:
    clock = Clock(100.0)
    rtc = Pl031(now=clock)
    rtc.write(RTC_LR, 4, 10)
    rtc.write(RTC_MR, 4, 11)
    clock.t += 1
    rtc.write(RTC_ICR, 4, 0)                   # 0 clears nothing
    assert rtc.read(RTC_RIS, 4) == 1
    rtc.write(RTC_ICR, 4, 2)                   # only bit 0 is the interrupt
    assert rtc.read(RTC_RIS, 4) == 1
    rtc.write(RTC_ICR, 4, 1)
    assert rtc.read(RTC_RIS, 4) == 0
    rtc.write(RTC_ICR, 4, 0)                   # ...and does not set it either
    assert rtc.read(RTC_RIS, 4) == 0
    rtc.write(RTC_IMSC, 4, 1)
    rtc.write(RTC_IMSC, 4, 2)                  # bit 1 is not a mask bit: masked again
    assert rtc.read(RTC_IMSC, 4) == 0


def test_pl031_match_reached_without_a_status_read_in_between() -> None:
    # The match is latched on the first read after the count passes MR, however late.
    clock = Clock(0.0)
    rtc = Pl031(now=clock)
    rtc.write(RTC_MR, 4, 50)
    rtc.write(RTC_IMSC, 4, 1)
    clock.t = 49.9
    assert rtc.read(RTC_MIS, 4) == 0
    clock.t = 500.0
    assert rtc.read(RTC_MIS, 4) == 1 and rtc.read(RTC_RIS, 4) == 1


# --- GED -------------------------------------------------------------------------------

def test_ged_other_offsets_read_zero_and_events_accumulate() -> None:
    line = Line()
    ged = Ged(line, 41)
    ged.raise_event(0x20)
    assert ged.read(4, 4) == 0                 # not ESEL: reads 0, clears nothing
    ged.raise_event(0x20)
    assert line.pulses == [41, 41]
    assert ged.read(0, 4) == 0x20


# --- generic timer ---------------------------------------------------------------------

@pytest.fixture
def timer():
    counter, lines = FakeCounter(), Lines()
    return GenericTimer(counter, lines, phys_intid=30, virt_intid=27), counter, lines


def test_timer_handles_only_the_el0_timer_registers(timer) -> None:
    t, _, _ = timer
    assert t.handles(3, 3, 14, 2) and t.handles(3, 3, 14, 3)     # CNTP_*, CNTV_*
    assert not t.handles(2, 3, 14, 2)          # op0 2: debug registers
    assert not t.handles(3, 4, 14, 2)          # CNTHP_*_EL2
    assert not t.handles(3, 3, 13, 2)
    assert not t.handles(3, 3, 14, 0)          # CNTFRQ/CNTPCT/CNTVCT: the counter, not a timer
    assert not t.handles(3, 3, 14, 1)          # CNTKCTL_EL1 (op1 0) / CNTPS
    assert t.read(PHYS, 3) == 0                # op2 3 is not a timer register


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


# --- GICv2 (Arm IHI 0048B) ------------------------------------------------------------

GICD_ISENABLER, GICD_ISPENDR, GICD_ISACTIVER, GICD_SGIR, GICD_CTLR = 0x100, 0x200, 0x300, 0xF00, 0x000
GICC_CTLR, GICC_PMR, GICC_IAR, GICC_EOIR, GICC_DIR = 0x00, 0x04, 0x0C, 0x10, 0x1000


class TwoCpuGic:
    """A 2-CPU GicV2 whose register accesses come from `self.cpu`."""

    def __init__(self) -> None:
        from armras.devices.gicv2 import GicV2

        self.cpu = 0
        self.dev = GicV2(num_cpus=2, current_cpu=lambda: self.cpu)
        for c in (0, 1):
            self.on(c)
            self.cw(GICC_CTLR, 1)                  # 4.4.1 Enable
            self.cw(GICC_PMR, 0xFF)
            self.dw(GICD_ISENABLER, 0xFFFF_FFFF)   # this CPU's SGIs and PPIs
        self.dw(GICD_CTLR, 1)
        self.on(0)

    def on(self, cpu: int) -> "TwoCpuGic":
        self.cpu = cpu
        return self

    def dw(self, off: int, value: int, size: int = 4) -> None:
        self.dev.distributor.write(off, size, value)

    def dr(self, off: int, size: int = 4) -> int:
        return self.dev.distributor.read(off, size)

    def cw(self, off: int, value: int) -> None:
        self.dev.cpu_interface.write(off, 4, value)

    def cr(self, off: int) -> int:
        return self.dev.cpu_interface.read(off, 4)


def test_gic_sgi_filters_name_the_sending_cpu() -> None:
    # 4.3.15 GICD_SGIR [25:24]: 1 = all but the requesting CPU, 2 = the requesting CPU only;
    # 4.4.4 GICC_IAR [12:10] = the CPU that requested the SGI.
    g = TwoCpuGic()
    g.on(1).dw(GICD_SGIR, 1 << 24 | 4)            # CPU 1: SGI 4 to all but self
    assert g.on(1).cr(GICC_IAR) == 1023
    assert g.on(0).cr(GICC_IAR) == 1 << 10 | 4
    g.on(0).cw(GICC_EOIR, 1 << 10 | 4)
    g.on(1).dw(GICD_SGIR, 2 << 24 | 6)            # CPU 1: SGI 6 to itself
    assert g.on(0).cr(GICC_IAR) == 1023
    assert g.on(1).cr(GICC_IAR) == 1 << 10 | 6


def test_gic_one_sgi_pending_from_two_cpus_is_taken_once_per_source() -> None:
    # 4.3.15 / 3.2.4: an SGI is pending separately for each requesting CPU.
    g = TwoCpuGic()
    g.on(1).dw(GICD_SGIR, 0x01 << 16 | 5)         # CPU 1 -> CPU 0, SGI 5
    g.on(0).dw(GICD_SGIR, 0x01 << 16 | 5)         # CPU 0 -> CPU 0, SGI 5
    assert g.on(0).cr(GICC_IAR) == 0 << 10 | 5    # lowest-numbered source first
    g.cw(GICC_EOIR, 5)
    assert g.cr(GICC_IAR) == 1 << 10 | 5
    g.cw(GICC_EOIR, 1 << 10 | 5)
    assert g.cr(GICC_IAR) == 1023


def test_gic_pulses_latch_spis_and_each_cpus_own_ppis() -> None:
    g = TwoCpuGic()
    g.dw(GICD_ISENABLER + 4, 1 << 0)              # SPI 32 (level-sensitive by default)
    g.dev.pulse(32)                                # a device's edge (the GED's)
    g.dev.pulse(32)
    assert g.dr(GICD_ISPENDR + 4) & 1
    assert g.on(0).cr(GICC_IAR) == 32             # latched although the line never stayed high
    g.cw(GICC_EOIR, 32)
    assert g.cr(GICC_IAR) == 1023                 # two pulses before the ack: one interrupt
    g.dev.cpu_port(1).pulse(23)                   # CPU 1's PPI 23
    assert g.on(0).dr(GICD_ISPENDR) >> 23 & 1 == 0
    assert g.on(1).dr(GICD_ISPENDR) >> 23 & 1 == 1
    assert g.on(1).cr(GICC_IAR) == 23


def test_gic_dir_deactivates_a_private_interrupt_of_the_cpu_writing_it() -> None:
    # 4.4.1 EOImodeNS: EOIR drops priority only, GICC_DIR deactivates (here a PPI, banked).
    g = TwoCpuGic()
    g.on(1).cw(GICC_CTLR, 1 | 1 << 9)
    g.dev.cpu_port(1).pulse(27)
    assert g.on(1).cr(GICC_IAR) == 27
    g.cw(GICC_EOIR, 27)
    assert g.dr(GICD_ISACTIVER) >> 27 & 1
    g.cw(GICC_DIR, 27)
    assert g.dr(GICD_ISACTIVER) >> 27 & 1 == 0


def test_gic_bit_registers_stop_at_the_last_interrupt() -> None:
    # 4.3.2: 288 interrupts (ITLinesNumber 8) -> GICD_ISENABLER0-8; a register past the
    # last one reads as zero, and a 32-bit read returns only its own 32 interrupts.
    g = TwoCpuGic()
    g.dw(GICD_ISENABLER + 4, 0xF)                 # SPIs 32-35
    assert g.dr(GICD_ISENABLER) == 0xFFFF_FFFF    # INTIDs 0-31 only
    g.dw(GICD_ISENABLER + 0x20, 1 << 31)          # INTID 287, the last one
    assert g.dr(GICD_ISENABLER + 0x20) == 1 << 31
    assert g.dr(GICD_ISENABLER + 0x24) == 0
    assert g.dr(GICD_ISPENDR + 0x24) == 0 and g.dr(GICD_ISACTIVER + 0x24) == 0


def test_gic_describe_lists_each_cpus_pending_and_active_interrupts() -> None:
    # The GIC part of the "idle with nothing that could wake it" error.
    g = TwoCpuGic()
    g.dw(0x800 + 40, 0x02, size=1)                # GICD_ITARGETSR: SPI 40 -> CPU 1 only
    g.dw(GICD_ISENABLER + 4, 1 << 8)
    g.dw(GICD_ISPENDR + 4, 1 << 8)
    g.dev.cpu_port(0).pulse(30)
    g.dw(GICD_ISACTIVER + 4, 1 << 9)              # SPI 41 active
    assert g.dev.describe(1) == ("GIC dist enable 1; CPU1: cpu enable 0x1 PMR 0xff pending [40] "
                                 "active [41] running []")
    assert g.dev.describe() == ("GIC dist enable 1; CPU0: cpu enable 0x1 PMR 0xff pending [30] active [41] "
                                "running []; CPU1: cpu enable 0x1 PMR 0xff pending [40] active [41] running []")
    assert g.on(0).cr(GICC_IAR) == 30
    assert g.dev.describe(0) == ("GIC dist enable 1; CPU0: cpu enable 0x1 PMR 0xff pending [] active [30, 41] "
                                 "running [30]")
