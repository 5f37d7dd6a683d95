"""Lines grouped into records: a record starts at a line matching `start` and takes the
lines after it up to the next such line, `timeout` of silence or `max_lines`."""

from __future__ import annotations

import re


class Multiline:
    __slots__ = ("start", "timeout", "max_lines", "held", "start_offset", "last")

    def __init__(self, start: re.Pattern[str], timeout: float, max_lines: int):
        self.start = start
        self.timeout = timeout
        self.max_lines = max_lines
        self.held: list[str] = []
        #: where the held record begins in its file: what a position may be committed up to
        self.start_offset = 0
        self.last = 0.0

    def feed(self, line: str, offset: int, now: float, out: list[str]) -> None:
        """Add the line that begins at `offset`; records it completes go to `out`."""
        if self.held and self.start.search(line):
            out.append("\n".join(self.held))
            self.held = []
        if not self.held:
            self.start_offset = offset
        self.held.append(line)
        self.last = now
        if len(self.held) >= self.max_lines:
            out.append("\n".join(self.held))
            self.held = []

    def due(self, now: float) -> bool:
        return bool(self.held) and now - self.last >= self.timeout

    def flush(self, out: list[str]) -> None:
        if self.held:
            out.append("\n".join(self.held))
            self.held = []
