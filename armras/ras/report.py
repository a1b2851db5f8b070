"""One path for every error report: choose the source, record the CPER, then notify.

As QEMU's hw/acpi/ghes.c (acpi_ghes_memory_errors records, then the notifier raises the
SEA or the GED event), whatever the source kind. The board supplies one Notification per
kind it can deliver (armras.ras.sources.Notify); each first says whether it can deliver
now (`check`: a CPU that is off, an SDEI event the guest never registered), so that a
refused report never leaves an unconsumed record behind that would block the source.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from armras.errors import ArmrasError
from armras.ras.ghes import ErrorSources, GhesSource
from armras.ras.sources import Notify, SourceSpec, notify_name

log = logging.getLogger(__name__)


class Notification(Protocol):
    def check(self, spec: SourceSpec, cpu: int | None) -> None:
        """Raise ArmrasError if this notification cannot be delivered (nothing recorded yet)."""

    def notify(self, spec: SourceSpec, cpu: int | None) -> None:
        """Tell the guest that `spec`'s error status block holds a new record."""


class ErrorReporter:
    def __init__(self, sources: ErrorSources, notifications: Mapping[Notify, Notification]) -> None:
        self.sources = sources
        self._notifications = dict(notifications)
        for s in sources:
            if s.notify_type not in self._notifications:
                raise ArmrasError(f"error source {s.source_id}: the board cannot deliver "
                                  f"{notify_name(s.notify_type)} notifications")

    def source(self, *, notify: Notify | None = None, source_id: int | None = None) -> GhesSource:
        """The source a report goes to: `source_id` (which must be `notify`-notified if both
        are given), else the first source notified by `notify`."""
        if source_id is not None:
            source = self.sources.by_id(source_id)
            if notify is not None and source.notify_type is not notify:
                raise ArmrasError(f"error source {source_id} is {notify_name(source.notify_type)}-notified, "
                                  f"not {notify_name(notify)}")
            return source
        if notify is None:
            raise ArmrasError("an error report needs a source id or a notification kind")
        return self.sources.first(notify)

    def report(self, source: GhesSource, estatus: bytes, cpu: int | None = None) -> None:
        """Record `estatus` in `source`, then notify the guest as the source says."""
        notification = self._notifications[source.notify_type]
        notification.check(source.spec, cpu)
        source.record(estatus)
        notification.notify(source.spec, cpu)


__all__ = ["ErrorReporter", "Notification"]
