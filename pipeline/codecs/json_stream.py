"""JSON arrays and objects back to back in a byte stream (the forward protocol's JSON
variant), cut out whole as they come.

Each byte is looked at once, however the stream is split: trying to parse the whole
buffer after every read was quadratic for a message trickled in small reads, and
decoding each read on its own broke a UTF-8 character split between two. Only ASCII
bytes are structure in JSON, and no byte of a multi-byte UTF-8 character is ASCII, so
the bytes are scanned as they are and a value is decoded once it is whole.
"""

from __future__ import annotations

import re

#: what ends or nests a value outside strings, and what matters inside one
_OUTSIDE = re.compile(rb'["\[\]{}]')
_INSIDE = re.compile(rb'["\\]')
_NOT_SPACE = re.compile(rb"[^ \t\r\n]")


class JsonStreamError(ValueError):
    """The stream holds something other than arrays and objects, or one past the limit."""


class JsonStream:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.pos = 0  # how far buf is scanned
        self.depth = 0
        self.in_string = False
        self.escaped = False  # a backslash ended the last read, inside a string

    def feed(self, data: bytes) -> list[bytes]:
        """The values that `data` completes, as bytes."""
        buf = self.buf
        buf += data
        values: list[bytes] = []
        start = 0  # of the value being scanned, in buf
        i = self.pos
        end = len(buf)
        while i < end:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                    i += 1
                    continue
                m = _INSIDE.search(buf, i)
                if m is None:
                    i = end
                elif buf[m.start()] == 0x5C:  # a backslash: the next byte is taken as it is
                    i = m.start() + 2
                    if i > end:
                        self.escaped, i = True, end
                else:
                    self.in_string, i = False, m.start() + 1
            elif self.depth == 0:
                m = _NOT_SPACE.search(buf, i)
                if m is None:
                    start = i = end
                elif buf[m.start()] in b"[{":
                    start, i = m.start(), m.start() + 1
                    self.depth = 1
                else:
                    raise JsonStreamError(f"not a JSON array or object: {bytes(buf[m.start():m.start() + 40])!r}")
            else:
                m = _OUTSIDE.search(buf, i)
                if m is None:
                    i = end
                    continue
                c, i = buf[m.start()], m.start() + 1
                if c == 0x22:  # "
                    self.in_string = True
                elif c in b"[{":
                    self.depth += 1
                else:
                    self.depth -= 1
                    if self.depth == 0:
                        values.append(bytes(buf[start:i]))
                        start = i
        if self.depth == 0 and not self.in_string:
            start = i  # only blanks are left after the last value
        del buf[:start]
        self.pos = i - start
        if len(buf) > self.max_bytes:
            raise JsonStreamError(f"JSON message larger than max_message_bytes ({self.max_bytes})")
        return values

    @property
    def pending(self) -> bool:
        """Whether the start of a value is held: the stream ended inside it."""
        return bool(self.buf)
