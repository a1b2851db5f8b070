"""The Boot Error Region that the BERT points at (ACPI 6.4 18.3.1).

Firmware leaves the errors of the previous boot there as Generic Error Status Blocks,
one after another; the first block whose Block Status is 0 ends the list (Linux
drivers/acpi/apei/bert.c bert_print_all prints "Error records from previous boot:" and
each record). The region lives in firmware-reserved memory, so it is rewritten at every
boot from what the platform kept (armras.board.persistent).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from armras.board.memory import PhysicalMemory
from armras.errors import ArmrasError
from armras.ras import cper

log = logging.getLogger(__name__)


class BootErrorRegion:
    def __init__(self, mem: PhysicalMemory, base: int, size: int) -> None:
        self._mem = mem
        self.base = base
        self.size = size
        self.used = 0
        self.records = 0

    def install(self, records: Iterable[bytes]) -> None:
        """Firmware at boot: the region cleared, then `records` (the previous boot's)."""
        self._mem.write(self.base, bytes(self.size))
        self.used = self.records = 0
        for record in records:
            self.append(record)

    def append(self, estatus: bytes) -> None:
        """Add one Generic Error Status Block (checked as Linux checks it) after the others."""
        status = cper.parse_generic_error_status(estatus, max_length=self.size, require_active=True)
        record = bytes(estatus[:status.length])
        # Keep room for an empty block header after the last record: it ends the list.
        if self.used + len(record) + cper.ESTATUS_SIZE > self.size:
            raise ArmrasError(f"the boot error region ({self.size} bytes) has no room for another "
                              f"{len(record)}-byte record ({self.records} recorded)")
        self._mem.write(self.base + self.used, record)
        self.used += len(record)
        self.records += 1
        log.info("BERT: record %d (%d bytes, %s) in the boot error region", self.records, len(record),
                 cper.severity_label(status.severity))


__all__ = ["BootErrorRegion"]
