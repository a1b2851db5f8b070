"""Arm PrimeCell PL031 real-time clock (Arm DDI 0224): a seconds counter."""
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
ID_REGS = (0x31, 0x10, 0x04, 0x00, 0x0D, 0xF0, 0x05, 0xB1)


class Pl031:
    def __init__(self, now: Callable[[], float] = time.time, name: str = "rtc") -> None:
        self.name = name
        self._now = now
        self._offset = 0
        self.match = 0
        self.imsc = 0

    def _seconds(self) -> int:
        return (int(self._now()) + self._offset) & 0xFFFF_FFFF

    def read(self, offset: int, size: int) -> int:
        if offset == RTCDR:
            return self._seconds()
        if offset == RTCMR:
            return self.match
        if offset == RTCCR:
            return 1
        if offset == RTCIMSC:
            return self.imsc
        if 0xFE0 <= offset <= 0xFFC:
            return ID_REGS[(offset - 0xFE0) >> 2]
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == RTCLR:
            self._offset = value - int(self._now())
        elif offset == RTCMR:
            self.match = value
        elif offset == RTCIMSC:
            self.imsc = value & 1
