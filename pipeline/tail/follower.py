"""One file followed by the tail source: its descriptor, what was read of it, the line it
is in the middle of, and the position delivered so far."""

from __future__ import annotations

import codecs
import os
import time

from .multiline import Multiline
from .positions import FINGERPRINT_BYTES, Entry, Fingerprint

#: bytes read at a time: one batch per read (the stdin source measured 64 KiB fastest)
READ_SIZE = 64 * 1024
#: bytes of an over-long line shown in its error record
SAMPLE_BYTES = 200

# bytes that do not decode become U+FFFD, as "replace" does, and are counted
_undecodable = [0]


def _count_undecodable(e: UnicodeError) -> tuple[str, int]:
    _undecodable[0] += 1
    return "\ufffd", e.end  # type: ignore[attr-defined]


codecs.register_error("pipeline.tail", _count_undecodable)


def undecodable() -> int:
    """Undecodable byte sequences met so far by every follower of this process."""
    return _undecodable[0]


class Track:
    """The delivered offset in one content of a file. Acks update the track they were
    taken on: a file truncated gets a new track (the old one's acks no longer move it), and
    the copy copytruncate made of it takes the old one over, with its acks in flight."""

    __slots__ = ("committed",)

    def __init__(self, committed: int):
        self.committed = committed


class Follower:
    def __init__(self, path: str, name: str, fd: int, st: os.stat_result, offset: int,
                 fingerprint: Fingerprint, track: Track, *, primary: bool, encoding: str,
                 max_line_bytes: int, multiline: Multiline | None):
        #: where the file is now, and the path it was first followed at (its tag, path_key)
        self.path = path
        self.name = name
        self.fd: int | None = fd
        self.dev, self.ino = st.st_dev, st.st_ino
        self.offset = offset
        self.fingerprint = fingerprint.grown(fd, st.st_size)
        self.track = track
        #: matched by `path` (else only by `rotated`: read to its end, then let go)
        self.primary = primary
        #: since when it is no longer where the globs look (renamed away, deleted)
        self.gone_since: float | None = None
        self.encoding = encoding
        self.max_line_bytes = max_line_bytes
        self.multiline = multiline
        self.partial = b""
        #: where the over-long line being skipped began
        self.skip_start: int | None = None
        self.at_end = False
        #: closed while idle to keep under max_open_files, reopened when its file grows
        self.parked = False
        #: when it last gave bytes (the idlest are parked first)
        self.last_read = time.monotonic()

    def entry(self) -> Entry:
        return Entry(self.name, self.dev, self.ino, self.fingerprint, self.track.committed)

    def safe_offset(self) -> int:
        """Just past the last whole record read: the position to commit once it is delivered."""
        if self.skip_start is not None:
            return self.skip_start
        if self.multiline is not None and self.multiline.held:
            return self.multiline.start_offset
        return self.offset - len(self.partial)

    def truncated(self) -> bool:
        """The file is shorter than what was read of it, or its head is no longer the one
        fingerprinted (truncated and written past the old offset since the last look)."""
        assert self.fd is not None
        size = os.fstat(self.fd).st_size
        if size < self.offset:
            return True
        return size > self.offset and not self.fingerprint.matches(self.fd)

    def restart(self) -> None:
        """Read the file again from its head, as a new content."""
        assert self.fd is not None
        self.offset = 0
        self.partial = b""
        self.skip_start = None
        if self.multiline is not None:
            self.multiline.held = []
        self.fingerprint = Fingerprint.of(self.fd)
        self.track = Track(0)
        self.at_end = False

    def read(self, out: list[str], problems: list[tuple[str, int, bytes]]) -> bool:
        """Read one block: whole records to `out`, over-long lines to `problems` (message,
        offset, first bytes). False at the end of the file."""
        assert self.fd is not None
        data = os.pread(self.fd, READ_SIZE, self.offset)
        if not data:
            self.at_end = True
            return False
        self.at_end = False
        self.last_read = time.monotonic()
        start = self.offset
        self.offset += len(data)
        if self.fingerprint.length < FINGERPRINT_BYTES:
            self.fingerprint = self.fingerprint.grown(self.fd, self.offset)
        if self.skip_start is not None:
            newline = data.find(b"\n")
            if newline < 0:
                return True
            self.skip_start = None
            data = data[newline + 1:]
            start += newline + 1
        if self.partial:
            start -= len(self.partial)
            data = self.partial + data
        cut = data.rfind(b"\n")
        rest = data[cut + 1:]
        if cut >= 0:
            whole = data[:cut]
            if self.multiline is None and len(whole) <= self.max_line_bytes:
                # no line of it can be too long, and none needs its offset: the block is
                # decoded and split at once, without a Python step per line
                self._block(whole, out)
            else:
                self._records(whole.split(b"\n"), start, out, problems)
        if len(rest) > self.max_line_bytes:
            self._too_long(rest, self.offset - len(rest), problems)
            self.skip_start = self.offset - len(rest)
            rest = b""
        self.partial = rest
        return True

    def _block(self, whole: bytes, out: list[str]) -> None:
        text = whole.decode(self.encoding, "pipeline.tail")
        if "\r" in text:
            text = text.replace("\r\n", "\n").removesuffix("\r")
        out.extend(text.split("\n"))

    def _too_long(self, line: bytes, offset: int, problems: list[tuple[str, int, bytes]]) -> None:
        problems.append((f"line longer than max_line_bytes ({self.max_line_bytes}): skipped to the next line",
                         offset, line[:SAMPLE_BYTES]))

    def _records(self, lines: list[bytes], start: int, out: list[str],
                 problems: list[tuple[str, int, bytes]]) -> None:
        encoding, limit, multiline = self.encoding, self.max_line_bytes, self.multiline
        now = time.monotonic()
        pos = start
        for raw in lines:
            line_start = pos
            pos += len(raw) + 1
            if len(raw) > limit:
                self._too_long(raw, line_start, problems)
                continue
            if raw[-1:] == b"\r":
                raw = raw[:-1]
            text = raw.decode(encoding, "pipeline.tail")
            if multiline is None:
                out.append(text)
            else:
                multiline.feed(text, line_start, now, out)

    def finish(self, out: list[str]) -> None:
        """The file is done with (rotated away and read, or --once's end): a last line
        without its newline and a held multiline record go out as they are."""
        if self.partial:
            text = self.partial.removesuffix(b"\r").decode(self.encoding, "pipeline.tail")
            if self.multiline is not None:
                self.multiline.feed(text, self.offset - len(self.partial), time.monotonic(), out)
            else:
                out.append(text)
            self.partial = b""
        if self.multiline is not None:
            self.multiline.flush(out)

    def park(self) -> None:
        self.close()
        self.parked = True

    def unpark(self, fd: int) -> None:
        self.fd = fd
        self.parked = False

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
