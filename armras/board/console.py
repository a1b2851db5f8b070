"""The board's console: what the UART prints, forwarded, kept, and matched line by line."""
from __future__ import annotations

import collections
import sys
from typing import BinaryIO, Callable


class Console:
    """The UART's output: forwarded to a stream, kept as recent lines, matched by triggers.

    A line is complete at LF, or at MAX_LINE bytes: a guest printing without newlines
    must not grow armras without bound. Bytes reach the stream a line at a time (and at
    `flush`, which the run loop calls when the guest idles and when it stops): the UART
    sends one byte per MMIO write, and under PYTHONUNBUFFERED (common in containers and
    CI) each would otherwise be a system call.
    """

    MAX_LINE = 4096

    def __init__(self, stream: BinaryIO | None) -> None:
        self._stream = stream
        self.recent: collections.deque[str] = collections.deque(maxlen=40)
        self._line = bytearray()
        self._unwritten = bytearray()
        self._watchers: list[Callable[[str], None]] = []

    def watch(self, fn: Callable[[str], None]) -> None:
        self._watchers.append(fn)

    def write(self, data: bytes) -> None:
        self._unwritten += data
        view = memoryview(data)
        while view:
            newline = bytes(view[:self.MAX_LINE - len(self._line)]).find(b"\n")
            if newline >= 0:
                self._line += view[:newline]
                view = view[newline + 1:]
                self.flush()
                self._end_line()
                continue
            room = self.MAX_LINE - len(self._line)
            self._line += view[:room]
            view = view[room:]
            if len(self._line) >= self.MAX_LINE:
                self.flush()
                self._end_line()

    def _end_line(self) -> None:
        line = self._line.decode("utf-8", "replace").rstrip("\r")
        self._line.clear()
        self.recent.append(line)
        for w in self._watchers:
            w(line)

    def flush(self) -> None:
        out = self._stream if self._stream is not None else sys.stdout.buffer
        if self._unwritten:
            out.write(self._unwritten)
            self._unwritten.clear()
        out.flush()


__all__ = ["Console"]
