"""Syslog on the wire: facility and severity names (RFC 5424 section 6.2.1), RFC 6587 framing
of a TCP stream (octet counting, or a line feed after each message), and writing RFC 5424 and
RFC 3164 messages. (Reading a message is the `syslog` parser's: pipeline/parsers/syslog.py.)"""

from __future__ import annotations

import time
from typing import Any

import orjson

from .formats import LineDecoder, text_lines

FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
              "ftp", "ntp", "security", "console", "solaris-cron",
              "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7")
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
#: by PRI (0-191): a table lookup per message, no arithmetic or call
FACILITY_OF_PRI = tuple(FACILITIES[pri >> 3] for pri in range(192))
SEVERITY_OF_PRI = tuple(SEVERITIES[pri & 7] for pri in range(192))

#: what records and configs call them: the names above, the numbers, and the other names
#: syslog(3), logger(1) and rsyslog take
FACILITY_NUMBERS: dict[Any, int] = {name: i for i, name in enumerate(FACILITIES)}
FACILITY_NUMBERS |= {"audit": 13, "alert": 14, "clock": 15}  # rsyslog's names of 13-15
SEVERITY_NUMBERS: dict[Any, int] = {name: i for i, name in enumerate(SEVERITIES)}
SEVERITY_NUMBERS |= {"panic": 0, "emergency": 0, "critical": 2, "error": 3, "warn": 4, "informational": 6}
for _names in (FACILITY_NUMBERS, SEVERITY_NUMBERS):
    _names |= {n: n for n in set(_names.values())} | {str(n): n for n in set(_names.values())}


class FramingError(ValueError):
    """An octet-counted stream that does not start a frame with its length: it cannot be resynced."""


class LineFrames(LineDecoder):
    """Messages each ended by a line feed (RFC 6587 non-transparent framing), as text; a message
    past `max_bytes` is a problem and skipped. A line feed inside a message splits it: octet
    counting is what keeps such messages whole."""

    #: never: a line feed is always a frame's end
    broken: str | None = None

    def _too_long(self, line: bytes) -> tuple[str, bytes]:
        return f"message longer than max_message_bytes ({self.max_line}), skipped", line[:256]

    def lines(self, block: bytes) -> tuple[list[str], list]:
        return text_lines(block), []


class OctetFrames:
    """Messages of an RFC 6587 octet-counted stream (`LEN SP MSG`), as text. One past
    `max_bytes` is a problem: its bytes are skipped, counted, never held. Where a frame does not
    start with its length, `broken` says why: the messages before it are given, none after."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.rest = b""
        self.skip = 0  # bytes still to skip of a message too large
        self.broken: str | None = None

    def feed(self, data: bytes) -> tuple[list[str], list[tuple[str, bytes]]]:
        problems: list[tuple[str, bytes]] = []
        if self.broken:
            return [], problems
        if self.skip:
            taken = min(self.skip, len(data))
            self.skip -= taken
            data = data[taken:]
        if self.rest:
            data = self.rest + data
        out: list[str] = []
        pos, end = 0, len(data)
        find = data.find
        while pos < end:
            space = find(b" ", pos, pos + 11)
            digits = data[pos:space] if space >= 0 else data[pos:end]
            if not digits.isdigit() or digits[:1] == b"0" or (space < 0 and end - pos > 10):
                self.broken = f"expected a frame's length at {data[pos:pos + 20]!r}"
                pos = end
                break
            if space < 0:
                break
            size = int(digits)
            start = space + 1
            if size > self.max_bytes:
                problems.append((f"message of {size} bytes, larger than max_message_bytes ({self.max_bytes}), "
                                 "skipped", data[start:start + 256]))
                have = end - start
                if have < size:
                    self.skip = size - have
                    pos = end
                    break
                pos = start + size
                continue
            if end - start < size:
                break
            out.append(data[start:start + size].decode("utf-8", "replace"))
            pos = start + size
        self.rest = data[pos:] if pos < end else b""
        return out, problems

    def finish(self) -> tuple[list[str], list[tuple[str, bytes]]]:
        rest, self.rest = self.rest, b""
        return [], [("stream ends inside a frame", rest[:256])] if rest.strip() else []


def detect(first: bytes, max_bytes: int) -> LineFrames | OctetFrames:
    """The framing of a TCP connection, told from its first byte (RFC 6587 section 3.4): a
    digit starts an octet count, `<` a message ended by a line feed."""
    return OctetFrames(max_bytes) if first[:1].isdigit() else LineFrames(max_bytes)


def header_field(value: Any, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, at most `limit` characters,
    `-` for none."""
    if value is None:
        return "-"
    text = value if type(value) is str else str(value)
    if not text:
        return "-"
    if not (text.isascii() and text.isprintable()) or " " in text:
        text = "".join(c if "!" <= c <= "~" else "_" for c in text)
    return text[:limit]


def _sd_name(name: Any) -> str:
    text = header_field(name, 32)
    return "".join("_" if c in '=]"' else c for c in text)


def _sd_value(value: Any) -> str:
    text = value if type(value) is str else orjson.dumps(value).decode() if value is not None else ""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def structured_data(sd: Any) -> str:
    """`{SD-ID: {param: value}}` (what the parser gives) as RFC 5424 SD-ELEMENTs; `-` for none."""
    if not isinstance(sd, dict) or not sd:
        return "-"
    parts = []
    for sd_id, params in sd.items():
        pairs = params.items() if isinstance(params, dict) else ()
        parts.append(f"[{_sd_name(sd_id)}" + "".join(f' {_sd_name(k)}="{_sd_value(v)}"' for k, v in pairs) + "]")
    return "".join(parts)


class Stamps:
    """Event times as RFC 3339 (UTC, microseconds) or RFC 3164 (local time, no year), the
    seconds part formatted once per second of event time."""

    def __init__(self, rfc5424: bool) -> None:
        self.rfc5424 = rfc5424
        self.second = -1
        self.text = ""

    def __call__(self, time_ns: int) -> str:
        second, ns = divmod(time_ns, 1_000_000_000)
        if second != self.second:
            self.second = second
            if self.rfc5424:
                self.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            else:
                t = time.localtime(second)
                self.text = time.strftime("%b ", t) + f"{t.tm_mday:>2}" + time.strftime(" %H:%M:%S", t)
        return f"{self.text}.{ns // 1000:06d}Z" if self.rfc5424 else self.text


def message_text(record: dict, key: str) -> str:
    """The MSG part: the record's `key` field, or the whole record as JSON where it has none."""
    value = record.get(key) if key else None
    if value is None:
        return orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    return value if type(value) is str else str(value)


def cut_utf8(data: bytes, limit: int) -> bytes:
    """`data` cut to at most `limit` bytes, not inside a UTF-8 character."""
    if len(data) <= limit:
        return data
    end = limit
    while end > 0 and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end]
