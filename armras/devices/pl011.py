"""Arm PrimeCell PL011 UART (Arm DDI 0183), as QEMU's hw/char/pl011.c models it.

Transmit is instantaneous: every byte written to DR goes to the console sink at once,
and the TX interrupt is raised on each write (cleared by ICR), which is what Linux's
amba-pl011/SBSA driver expects. Receive takes bytes queued by the host.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from armras.devices import IrqSink

UARTDR = 0x000
UARTRSR = 0x004
UARTFR = 0x018
UARTILPR = 0x020
UARTIBRD = 0x024
UARTFBRD = 0x028
UARTLCR_H = 0x02C
UARTCR = 0x030
UARTIFLS = 0x034
UARTIMSC = 0x038
UARTRIS = 0x03C
UARTMIS = 0x040
UARTICR = 0x044
UARTDMACR = 0x048

FR_RXFE = 1 << 4
FR_TXFF = 1 << 5
FR_RXFF = 1 << 6
FR_TXFE = 1 << 7

INT_RX = 1 << 4
INT_TX = 1 << 5
INT_RT = 1 << 6
INT_MASK = 0x7FF

# PeriphID0-3 then PCellID0-3 at 0xFE0..0xFFC
ID_REGS = (0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1)


class Pl011:
    def __init__(self, output: Callable[[bytes], None], irq: IrqSink, intid: int, name: str = "uart") -> None:
        self.name = name
        self._output = output
        self._irq = irq
        self._intid = intid
        self.rx: deque[int] = deque()
        self.int_level = 0
        self.int_enabled = 0
        self.regs = {UARTIBRD: 0, UARTFBRD: 0, UARTLCR_H: 0, UARTCR: 0x300, UARTIFLS: 0x12, UARTDMACR: 0,
                     UARTILPR: 0}

    def feed(self, data: bytes) -> None:
        """Queue host input for the guest to read."""
        self.rx.extend(data)
        self.int_level |= INT_RX
        self._update()

    def _update(self) -> None:
        self._irq.set_level(self._intid, bool(self.int_level & self.int_enabled))

    def read(self, offset: int, size: int) -> int:
        if offset == UARTDR:
            value = self.rx.popleft() if self.rx else 0
            if not self.rx:
                self.int_level &= ~(INT_RX | INT_RT)
                self._update()
            return value
        if offset == UARTFR:
            return FR_TXFE | (FR_RXFE if not self.rx else 0)
        if offset == UARTRSR:
            return 0
        if offset == UARTIMSC:
            return self.int_enabled
        if offset == UARTRIS:
            return self.int_level
        if offset == UARTMIS:
            return self.int_level & self.int_enabled
        if 0xFE0 <= offset <= 0xFFC:
            return ID_REGS[(offset - 0xFE0) >> 2]
        return self.regs.get(offset, 0)

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == UARTDR:
            self._output(bytes([value & 0xFF]))
            self.int_level |= INT_TX
        elif offset == UARTIMSC:
            self.int_enabled = value & INT_MASK
        elif offset == UARTICR:
            self.int_level &= ~value
        elif offset in self.regs:
            self.regs[offset] = value
        self._update()
