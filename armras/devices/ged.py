"""ACPI Generic Event Device (ACPI 6.x 5.6.9), as QEMU's hw/acpi/generic_event_device.c.

The event selector register ESEL reads the pending event bits and clears them; raising
an event sets its bit and pulses the GED's (edge-triggered) interrupt. The DSDT's
_EVT method maps bit ACPI_GED_ERROR_EVT to Notify(GEDD, 0x80), which Linux's hed.c
turns into a GHES poll of the GPIO-notified error sources.
"""
from __future__ import annotations

from armras.devices import IrqSink

GED_ESEL = 0x0
ACPI_GED_ERROR_EVT = 0x20


class Ged:
    def __init__(self, irq: IrqSink, intid: int, name: str = "ged") -> None:
        self.name = name
        self._irq = irq
        self._intid = intid
        self.selector = 0

    def raise_event(self, bits: int) -> None:
        self.selector |= bits
        self._irq.pulse(self._intid)

    def read(self, offset: int, size: int) -> int:
        if offset == GED_ESEL:
            value, self.selector = self.selector, 0
            return value
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        pass
