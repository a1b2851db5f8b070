"""Arm PrimeCell PL031 real-time clock (Arm DDI 0224): a seconds counter.

As QEMU's hw/rtc/pl031.c: writing RTCMR (or RTCLR) arms a match that sets the raw
interrupt status RTCRIS when the counter next reaches RTCMR (at once if it already
reads RTCMR; the 32-bit distance wraps, so a match in the past is ~136 years away);
RTCMIS = RTCRIS & RTCIMSC; writing 1 to RTCICR clears it. The status is evaluated when
the guest reads it: the board does not wire the RTC's interrupt output (QEMU virt's
SPI 2 / INTID 34), which no guest here relies on.
"""
from __future__ import annotations

import time
from typing import Callable

RTCDR = 0x00
RTCMR = 0x04
RTCLR = 0x08
RTCCR = 0x0C
RTCIMSC = 0x10
RTCRIS = 0x14
RTCMIS = 0x18
RTCICR = 0x1C
# RTCPeriphID0-3 then RTCPCellID0-3 (DDI 0224 3.3.9-3.3.16), as QEMU's pl031_id: part number
# 0x031, designer 0x41 (Arm), revision 1 in PeriphID2[7:4] (PeriphID2 = 0x14), PrimeCell
# 0xB105F00D.
ID_REGS = (0x31, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1)


class Pl031:
    def __init__(self, now: Callable[[], float] = time.time, name: str = "rtc") -> None:
        self.name = name
        self._now = now
        self._offset = 0
        self.match = 0
        self.imsc = 0
        self.ris = 0
        self._alarm: int | None = None   # unwrapped count at which RTCRIS gets set

    def now(self) -> float:
        """Seconds since 1970 as the RTC counts them (UEFI GetTime reads the same clock)."""
        return self._now() + self._offset

    def set_now(self, seconds: int) -> None:
        """Set the count, as a write to RTCLR does (UEFI SetTime)."""
        self.write(RTCLR, 4, seconds)

    def _count(self) -> int:
        return int(self._now()) + self._offset

    def _seconds(self) -> int:
        return self._count() & 0xFFFF_FFFF

    def _set_alarm(self) -> None:
        count = self._count()
        self._alarm = count + ((self.match - count) & 0xFFFF_FFFF)
        self._poll()

    def _poll(self) -> None:
        if self._alarm is not None and self._count() >= self._alarm:
            self.ris = 1
            self._alarm = None

    def read(self, offset: int, size: int) -> int:
        if offset == RTCDR:
            return self._seconds()
        if offset == RTCMR:
            return self.match
        if offset == RTCCR:
            return 1
        if offset == RTCIMSC:
            return self.imsc
        if offset == RTCRIS:
            self._poll()
            return self.ris
        if offset == RTCMIS:
            self._poll()
            return self.ris & self.imsc
        if 0xFE0 <= offset <= 0xFFC:
            return ID_REGS[(offset - 0xFE0) >> 2]
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == RTCLR:
            self._offset = (value & 0xFFFF_FFFF) - int(self._now())
            self._set_alarm()
        elif offset == RTCMR:
            self.match = value & 0xFFFF_FFFF
            self._set_alarm()
        elif offset == RTCIMSC:
            self.imsc = value & 1
        elif offset == RTCICR:
            self._poll()
            self.ris &= ~value & 1
