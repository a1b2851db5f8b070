"""Rate-limited logging: a guest that repeats a mistake 200,000 times gets a few lines.

    limiter = RateLimiter(log)
    limiter.warning(("hvc", imm), "guest HVC #%#x at %#x: no firmware service", imm, pc)
    ...
    limiter.flush()    # "... repeated N times" for what was held back

The first `burst` messages of a key are logged as they come; after that they are
counted, and a summary naming the latest one ("<message> ... repeated N times") is
logged at most every `interval` seconds and by flush().
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable


@dataclass
class _Entry:
    level: int
    count: int = 0
    suppressed: int = 0
    summary_at: float = 0.0
    message: tuple[str, tuple[object, ...]] = ("", ())


@dataclass
class RateLimiter:
    logger: logging.Logger
    burst: int = 3
    interval: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _entries: dict[Hashable, _Entry] = field(default_factory=dict)

    def log(self, level: int, key: Hashable, msg: str, *args: object) -> None:
        now = self.clock()
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(level, summary_at=now)
        entry.count += 1
        if entry.count <= self.burst:
            self.logger.log(level, msg, *args)
            return
        entry.suppressed += 1
        entry.message = (msg, args)
        if now - entry.summary_at >= self.interval:
            self._summarize(entry, now)

    def warning(self, key: Hashable, msg: str, *args: object) -> None:
        self.log(logging.WARNING, key, msg, *args)

    def _summarize(self, entry: _Entry, now: float) -> None:
        msg, args = entry.message
        self.logger.log(entry.level, msg + " ... repeated %d times", *args, entry.suppressed)
        entry.suppressed = 0
        entry.summary_at = now

    def flush(self) -> None:
        """Log a summary for every key with messages held back since its last one."""
        now = self.clock()
        for entry in self._entries.values():
            if entry.suppressed:
                self._summarize(entry, now)
