"""A run's event log: one JSON object per line, for machines to read (`--events FILE`).

Each record names what happened (`event`), when (`boot`: 1 for the first boot, 2 after
a warm reset, ...; `guest_time`: seconds of the guest's virtual counter since that boot
started; `instructions`: guest instructions executed in that boot) and a sequence number
(`seq`), plus the event's own fields. Addresses and syndromes are hex strings
("0x96000410"), counts and ids are numbers:

    boot       a board starts (guest: what boots)
    phase      a Linux boot phase was reached: efi_stub, kernel, init
    inject     an injection was carried out (kind, pa, cpu, source, ...; outcome
               "done" or "refused" with error)
    poison     a page was taken away from the guest (page)
    cper       a record was written into an error source (source, notify, bytes,
               block, block_status, severity, sections)
    notify     the guest was notified (kind sea | serror | gpio | sdei; cpu, esr, ...)
    read_ack   the platform observed that the guest acknowledged a source's record
               (at the next stop of the CPU after the guest's write: at most one slice)
    power_off  the guest powered the board off (status, reason); `reset` for a warm reset
    error      the run ended with an armras error (exit_code, message)
    dropped    the log reached its bound; this many records were not written

The log is bounded (MAX_RECORDS records, MAX_BYTES bytes): a guest that makes errors
for ever cannot fill the disk. It is safe to call from several threads.
"""
from __future__ import annotations

import collections
import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable, TextIO

from armras.errors import ArmrasError

log = logging.getLogger(__name__)

MAX_RECORDS = 100_000
MAX_BYTES = 64 << 20
KEEP_IN_MEMORY = 10_000        # records an in-memory log (the Python API's vm.events) keeps

Clock = Callable[[], "tuple[float, int]"]


def hex_or_none(value: int | None) -> str | None:
    return None if value is None else f"{value:#x}"


class EventLog:
    """Where a run's events go: a JSON-lines file, memory, both, or nowhere (disabled)."""

    def __init__(self, stream: TextIO | None = None, *, keep: int = 0,
                 max_records: int = MAX_RECORDS, max_bytes: int = MAX_BYTES) -> None:
        self._stream = stream
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep or None)
        self._keep = keep
        self.enabled = stream is not None or keep > 0
        self._max_records, self._max_bytes = max_records, max_bytes
        self._lock = threading.Lock()
        self._clock: Clock | None = None
        self.boot = 0
        self._seq = 0
        self._bytes = 0
        self.dropped = 0
        self._closed = False
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    @classmethod
    def open(cls, path: Path, *, keep: int = 0) -> EventLog:
        """A log written to `path` (created or truncated)."""
        try:
            stream = open(path, "w", encoding="utf-8")
        except OSError as e:
            raise ArmrasError(f"cannot write the event log {path}: {e.strerror}") from None
        return cls(stream, keep=keep)

    def bind_clock(self, clock: Clock) -> None:
        """What `guest_time` and `instructions` are read from: the board of the current boot."""
        self._clock = clock

    def listen(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Call fn(record) for every record (also those past the file's bound)."""
        self._listeners.append(fn)
        self.enabled = True

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        guest_time, instructions = self._clock() if self._clock is not None else (0.0, 0)
        with self._lock:
            if self._closed:
                return
            record = {"seq": self._seq, "event": event, "boot": self.boot,
                      "guest_time": round(guest_time, 9), "instructions": instructions, **fields}
            self._seq += 1
            if self._keep:
                self.records.append(record)
            self._write(record)
        for fn in self._listeners:
            fn(record)

    def _write(self, record: dict[str, Any]) -> None:
        if self._stream is None:
            return
        line = json.dumps(record, allow_nan=False, default=str) + "\n"
        if self._seq > self._max_records or self._bytes + len(line) > self._max_bytes:
            self.dropped += 1
            return
        try:
            self._stream.write(line)
            self._stream.flush()      # a crashed run still leaves every record before the crash
        except OSError as e:
            log.warning("event log: cannot write (%s); no more events are recorded", e.strerror)
            self._stream = None
            return
        self._bytes += len(line)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            if self.dropped:
                stream.write(json.dumps({"seq": self._seq, "event": "dropped", "boot": self.boot,
                                         "count": self.dropped}) + "\n")
            stream.close()
        except OSError as e:
            log.warning("event log: cannot close (%s)", e.strerror)


__all__ = ["EventLog", "KEEP_IN_MEMORY", "MAX_BYTES", "MAX_RECORDS", "hex_or_none"]
