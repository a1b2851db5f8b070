"""PL011 UART (Arm DDI 0183), PL031 RTC (Arm DDI 0224) and the ACPI GED's event selector
(ACPI 6.4 5.6.9, QEMU hw/acpi/generic_event_device.c), register by register, and the
RTC's reading on a deterministic board. Offsets and bit values are the TRMs'."""
from __future__ import annotations

import pytest

from armras.devices.ged import Ged
from armras.devices.pl011 import Pl011
from armras.devices.pl031 import Pl031
from test_machine import POWER_OFF

# PL011 (DDI 0183 3.2): DR, FR, IMSC, RIS, MIS, ICR; FR bits 3.3.3; interrupt bits 3.3.13
DR, FR, IMSC, RIS, MIS, ICR = 0x000, 0x018, 0x038, 0x03C, 0x040, 0x044
RSR, ILPR, IBRD, FBRD, LCR_H, CR, IFLS, DMACR = 0x004, 0x020, 0x024, 0x028, 0x02C, 0x030, 0x034, 0x048
FR_BUSY, FR_RXFE, FR_TXFF, FR_TXFE = 1 << 3, 1 << 4, 1 << 5, 1 << 7
RXIM, TXIM, RTIM = 1 << 4, 1 << 5, 1 << 6
UART_INTID = 33          # QEMU virt: VIRT_UART is SPI 1

# PL031 (DDI 0224 3.2): DR, MR, LR, CR, IMSC, RIS, MIS, ICR
RTC_DR, RTC_MR, RTC_LR, RTC_CR, RTC_IMSC, RTC_RIS, RTC_MIS, RTC_ICR = range(0, 0x20, 4)


class Line:
    def __init__(self) -> None:
        self.levels: list[tuple[int, bool]] = []
        self.pulses: list[int] = []

    def set_level(self, intid: int, level: bool) -> None:
        self.levels.append((intid, level))

    def pulse(self, intid: int) -> None:
        self.pulses.append(intid)

    def level(self, intid: int) -> bool:
        return [lv for i, lv in self.levels if i == intid][-1]


def amba_id(dev, base: int = 0xFE0) -> int:
    """PeriphID0-3 as the AMBA bus assembles them (Linux drivers/amba/bus.c)."""
    return sum((dev.read(base + 4 * k, 4) & 0xFF) << (8 * k) for k in range(4))


def cell_id(dev) -> int:
    return amba_id(dev, 0xFF0)


@pytest.fixture
def uart():
    out: list[bytes] = []
    line = Line()
    return Pl011(out.append, line, UART_INTID), out, line


def test_pl011_flags_and_transmit(uart) -> None:
    u, out, line = uart
    assert u.read(FR, 4) == FR_TXFE | FR_RXFE          # 0x90 at reset (QEMU): both FIFOs empty
    u.write(DR, 4, 0x141)                              # only DR[7:0] is data
    assert out == [b"A"]
    assert u.read(FR, 4) & (FR_TXFF | FR_BUSY) == 0    # transmit is instantaneous
    # Linux's amba-pl011 binds on PeriphID 0x00041011 (mask 0x000fffff), PrimeCell 0xB105F00D.
    assert amba_id(u) & 0x000FFFFF == 0x00041011 and cell_id(u) == 0xB105F00D


def test_pl011_receive_interrupt_mask_status_and_clear(uart) -> None:
    u, _, line = uart
    u.feed(b"hi")
    assert u.read(FR, 4) & FR_RXFE == 0
    assert u.read(RIS, 4) & RXIM and u.read(MIS, 4) == 0     # raw, but masked
    assert line.level(UART_INTID) is False
    u.write(IMSC, 4, RXIM)
    assert u.read(IMSC, 4) == RXIM
    assert u.read(MIS, 4) == RXIM and line.level(UART_INTID) is True
    assert u.read(DR, 4) == ord("h")
    assert line.level(UART_INTID) is True                    # one byte still waiting
    assert u.read(DR, 4) == ord("i")
    assert u.read(FR, 4) & FR_RXFE
    assert u.read(RIS, 4) & RXIM == 0 and line.level(UART_INTID) is False


def test_pl011_transmit_interrupt_and_icr(uart) -> None:
    u, _, line = uart
    u.write(IMSC, 4, TXIM)
    u.write(DR, 4, ord("x"))
    assert u.read(RIS, 4) & TXIM and u.read(MIS, 4) == TXIM
    assert line.level(UART_INTID) is True
    u.write(ICR, 4, RXIM)                                    # clearing another bit changes nothing
    assert u.read(MIS, 4) == TXIM and line.level(UART_INTID) is True
    u.write(ICR, 4, TXIM)
    assert u.read(RIS, 4) & TXIM == 0 and u.read(MIS, 4) == 0
    assert line.level(UART_INTID) is False
    u.write(DR, 4, ord("y"))
    u.write(IMSC, 4, 0)                                      # masking drops the line too
    assert u.read(RIS, 4) & TXIM and line.level(UART_INTID) is False


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_pl031_counts_seconds_and_loads() -> None:
    clock = Clock(1_000_000.7)
    rtc = Pl031(now=clock)
    assert rtc.read(RTC_DR, 4) == 1_000_000
    clock.t += 5
    assert rtc.read(RTC_DR, 4) == 1_000_005              # DR tracks time
    assert rtc.read(RTC_CR, 4) == 1                       # QEMU: permanently enabled
    rtc.write(RTC_LR, 4, 0x1000)
    assert rtc.read(RTC_DR, 4) == 0x1000
    clock.t += 3
    assert rtc.read(RTC_DR, 4) == 0x1003
    assert amba_id(rtc) & 0x000FFFFF == 0x00041031 and cell_id(rtc) == 0xB105F00D  # Linux rtc-pl031


def test_pl031_match_sets_ris_mis_follows_imsc_and_icr_clears() -> None:
    clock = Clock(5000.0)
    rtc = Pl031(now=clock)
    rtc.write(RTC_LR, 4, 100)
    assert rtc.read(RTC_RIS, 4) == 0 and rtc.read(RTC_MIS, 4) == 0
    rtc.write(RTC_MR, 4, 103)
    assert rtc.read(RTC_MR, 4) == 103
    clock.t += 2                                          # DR = 102: not yet
    assert rtc.read(RTC_RIS, 4) == 0
    clock.t += 1                                          # DR = 103 = MR: RIS set
    assert rtc.read(RTC_RIS, 4) == 1
    assert rtc.read(RTC_MIS, 4) == 0                      # masked
    rtc.write(RTC_IMSC, 4, 1)
    assert rtc.read(RTC_IMSC, 4) == 1 and rtc.read(RTC_MIS, 4) == 1
    clock.t += 10
    assert rtc.read(RTC_RIS, 4) == 1                      # stays set until cleared
    rtc.write(RTC_ICR, 4, 1)
    assert rtc.read(RTC_RIS, 4) == 0 and rtc.read(RTC_MIS, 4) == 0
    clock.t += 10
    assert rtc.read(RTC_RIS, 4) == 0                      # a match fires once
    # A match value equal to the current count fires at once (QEMU pl031_set_alarm).
    rtc.write(RTC_MR, 4, rtc.read(RTC_DR, 4))
    assert rtc.read(RTC_MIS, 4) == 1
    rtc.write(RTC_ICR, 4, 1)
    # One already in the past does not (the 32-bit distance wraps).
    rtc.write(RTC_MR, 4, rtc.read(RTC_DR, 4) - 1)
    clock.t += 100
    assert rtc.read(RTC_RIS, 4) == 0


def test_ged_event_selector_is_cleared_by_reading() -> None:
    line = Line()
    ged = Ged(line, 41)
    assert ged.read(0, 4) == 0
    ged.raise_event(0x20)
    assert line.pulses == [41]                            # edge: one pulse per event
    ged.raise_event(0x2)
    assert ged.read(0, 4) == 0x22                         # all pending events...
    assert ged.read(0, 4) == 0                            # ...and reading cleared them
    ged.write(0, 4, 0xFF)                                 # ESEL is read-only
    assert ged.read(0, 4) == 0


@pytest.mark.parametrize("loops,expected", [(0, 1_704_067_200), (35_000_000, 1_704_067_201)])
def test_rtc_reads_2024_at_guest_time_zero_in_deterministic_mode(board, loops: int, expected: int) -> None:
    # README: under --deterministic the PL031 reads 2024-01-01T00:00:00Z (Unix time
    # 1704067200) plus whole guest seconds; 35 M two-instruction iterations are 70 M
    # instructions, 1.12 s at 62.5 M instructions per second.
    b = board(f"""
 ldr x2, ={loops}
 cbz x2, 2f
1: subs x2, x2, #1
 b.ne 1b
2: ldr x3, =0x09010000
 ldr w22, [x3]              // RTCDR
""" + POWER_OFF, deterministic=True, timeout=60.0)
    r = b.run()
    assert r.status == 0
    assert b.x(22) == expected


# --- behaviour mutation testing found unchecked (benchmarks/mutation.sh) -----------

def test_pl011_reset_values_and_read_back_registers() -> None:
    # DDI 0183 table 3-1 and QEMU hw/char/pl011.c pl011_reset: CR 0x300, IFLS 0x12.
    out: list[bytes] = []
    u = Pl011(out.append, Line(), UART_INTID)
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
    # ID registers: 8 bits in a 32-bit word (DDI 0183 3.3.14-3.3.21), [31:8] read as zero.
    assert u.read(0xFFC, 1) == 0xB1 and u.read(0xFFD, 1) == 0
    assert out == []                           # none of that transmitted anything


def test_pl011_receive_reads_zero_when_empty_and_interrupt_follows_the_mask() -> None:
    line = Line()
    u = Pl011(lambda b: None, line, UART_INTID)
    assert u.read(DR, 4) == 0                  # empty FIFO
    u.write(IMSC, 4, 0xFFFF_FFFF)
    assert u.read(IMSC, 4) == 0x7FF            # IMSC is 11 bits wide (3.3.10)
    u.feed(b"z")
    assert u.read(FR, 4) == FR_TXFE               # 0x80: RXFE clear, and no other flag
    assert line.level(UART_INTID) is True
    assert u.read(DR, 4) == ord("z")
    assert u.read(RIS, 4) & RXIM == 0
    assert line.level(UART_INTID) is False
    u.write(DR, 4, ord("a"))                   # TX interrupt raised...
    u.feed(b"b")                               # ...and still raised next to RX
    assert u.read(RIS, 4) & (RXIM | TXIM) == RXIM | TXIM


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
    # The ID registers hold 8 bits in a 32-bit word (DDI 0224 3.3.9-3.3.16: [31:8] read
    # as zero): a byte read of an upper byte of the last one is 0.
    assert rtc.read(0xFFC, 1) == 0xB1 and rtc.read(0xFFD, 1) == 0
    rtc.write(RTC_LR, 4, 0xFFFF_FFFF)          # the counter wraps at 32 bits
    clock.t += 2
    assert rtc.read(RTC_DR, 4) == 1


def test_pl031_peripheral_id2_is_designer_4_revision_1_as_qemu() -> None:
    # RTCPeriphID2 (0xFE8): Designer1 [3:0] = 0x4 (DDI 0224, the low nibble of Arm's 0x41)
    # and Revision [7:4] = 1: QEMU's hw/rtc/pl031.c pl031_id reads 0x14 here, so the
    # 32-bit AMBA ID Linux assembles is 0x00141031 (bhyve's rtc_pl031 says the same).
    rtc = Pl031(now=Clock(0.0))
    assert rtc.read(0xFE8, 4) == 0x14
    assert amba_id(rtc) == 0x00141031


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


def test_ged_other_offsets_read_zero_and_events_accumulate() -> None:
    line = Line()
    ged = Ged(line, 41)
    ged.raise_event(0x20)
    assert ged.read(4, 4) == 0                 # not ESEL: reads 0, clears nothing
    ged.raise_event(0x20)
    assert line.pulses == [41, 41]
    assert ged.read(0, 4) == 0x20


def test_pl011_transmit_and_receive_interrupts_are_independent() -> None:
    u = Pl011(lambda b: None, Line(), UART_INTID)
    u.feed(b"q")
    u.write(DR, 4, ord("w"))                      # TX raised, RX still raised
    assert u.read(RIS, 4) == RXIM | TXIM
    assert u.read(DR, 4) == ord("q")
    u.write(ICR, 4, TXIM)                         # 3.3.14: clears exactly the bits written
    assert u.read(RIS, 4) == 0
