"""Decoding of the streams sources read (JSON, JSON lines, msgpack, lines), and JSON itself.
(Writing for the sinks is pipeline/codecs/encode.py.)

JSON goes through orjson (C) with a stdlib fallback for the two things orjson
gets wrong for us: integers past 64 bits (it returns a float, silently losing
digits) and invalid UTF-8 (uWSGI copies raw request header bytes into its stats).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgpack
import orjson

from ..event import Record
from . import edge
from .quote import sample

DECODE_FORMATS = ("json", "json_lines", "msgpack", "lines")

#: default bounds of what a source holds before parsing: a whole document, one line
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024

# 20 digits in a row may be an integer at or past 2**64, which orjson turns into a float.
# Mapping digits to "0" and the rest to " " and searching for twenty "0"s is two linear
# passes in C: several times faster than a regex, and cheaper than orjson's own parse.
_DIGIT_MAP = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_TWENTY = b"0" * 20


def has_long_digits(data: bytes) -> bool:
    return _TWENTY in data.translate(_DIGIT_MAP)


class DecodeError(ValueError):
    pass


def _deep(data: bytes) -> bool:
    """Whether a document may nest deeper than edge.MAX_DEPTH: it has more brackets."""
    return data.count(b"{") + data.count(b"[") > edge.MAX_DEPTH


def json_loads(data: bytes | str) -> Any:
    """The document, made to the rule of pipeline/codecs/edge.py (DecodeError if it refuses it)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if not has_long_digits(data):
        try:
            doc = orjson.loads(data)  # valid UTF-8, string keys, 64-bit integers
            return _cleaned(doc) if _deep(data) else doc
        except orjson.JSONDecodeError:
            pass
    try:
        # strict=False takes the raw control characters uWSGI leaves inside strings
        return _cleaned(json.loads(data.decode("utf-8", "replace"), strict=False))
    except RecursionError:
        raise DecodeError(f"nested deeper than {edge.MAX_DEPTH} levels") from None
    except ValueError as e:
        raise DecodeError(str(e)) from None


def _cleaned(doc: Any) -> Any:
    # a document is a record or a list of them: the list is no level of theirs
    if type(doc) is list:
        return [_cleaned_record(d) for d in doc]
    return _cleaned_record(doc)


def _cleaned_record(doc: Any) -> Any:
    try:
        return edge.clean(doc)
    except edge.Refused as e:
        raise DecodeError(str(e)) from None


def json_dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def _records_of(doc: Any) -> list[Record]:
    if isinstance(doc, dict):
        return [doc]
    if isinstance(doc, list) and all(isinstance(d, dict) for d in doc):
        return doc
    raise DecodeError(f"expected a JSON object (or a list of objects), got {type(doc).__name__}")


def json_records(data: bytes) -> list[Record]:
    """The records of one JSON document (an object, or a list of objects), made to the rule
    of edge.py; DecodeError if it is none."""
    if not has_long_digits(data) and not _deep(data):
        try:
            doc = orjson.loads(data)
            if type(doc) is dict:
                return [doc]
        except orjson.JSONDecodeError:
            pass
    return _records_of(json_loads(data))


def msgpack_record(data: bytes) -> Record:
    """One msgpack map, made to the rule of edge.py; DecodeError if it is not one."""
    try:
        obj = msgpack.unpackb(data, raw=False, unicode_errors="replace", strict_map_key=False,
                              object_pairs_hook=edge.pairs)
    except (msgpack.UnpackException, ValueError, TypeError) as e:
        raise DecodeError(f"malformed msgpack: {e}") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"expected a msgpack map, got {type(obj).__name__}")
    records, refused = edge.checked([obj])
    if refused:
        raise DecodeError(f"record refused: {refused[0][1]}")
    return records[0]


class Decoder:
    """Turns a byte stream into records. `feed` as data comes, `finish` at its end.
    Each returns (records, problems); a problem is (message, offending bytes)."""

    def feed(self, data: bytes) -> tuple[list[Record], list[tuple[str, bytes]]]:
        raise NotImplementedError

    def finish(self) -> tuple[list[Record], list[tuple[str, bytes]]]:
        return [], []

    def decode(self, data: bytes) -> tuple[list[Record], list[tuple[str, bytes]]]:
        records, problems = self.feed(data)
        more, more_problems = self.finish()
        return records + more, problems + more_problems


class JsonDocument(Decoder):
    """One document, held until the end: past `max_bytes` it is dropped, not parsed."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.parts: list[bytes] = []
        self.size = 0

    def feed(self, data):
        if self.size < 0:  # too large already: the rest of it goes
            return [], []
        self.size += len(data)
        if self.max_bytes is not None and self.size > self.max_bytes:
            start = (self.parts or [data])[0]
            self.parts, self.size = [], -1
            return [], [(f"document larger than max_bytes ({self.max_bytes} bytes), not parsed", start)]
        self.parts.append(data)
        return [], []

    def finish(self):
        data = b"".join(self.parts)
        self.parts, self.size = [], 0
        if not data.strip():
            return [], []
        try:
            return _records_of(json_loads(data)), []
        except DecodeError as e:
            return [], [(f"not a JSON document: {e}", data)]


def text_lines(block: bytes) -> list[str]:
    """A block of whole lines (without the last line break) as text: UTF-8 (bad bytes become
    U+FFFD), CRLF or LF ends, empty lines left out. One decode and one split for the block."""
    text = block.decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").removesuffix("\r")
    lines = text.split("\n")
    if "" in lines:
        lines = [line for line in lines if line]
    return lines


class LineDecoder(Decoder):
    """Whole lines to `lines`; a line longer than `max_line_bytes` is one problem, and the
    rest of it is skipped to the next line break without being held."""

    def __init__(self, max_line_bytes: int | None = None) -> None:
        self.max_line = max_line_bytes
        self.rest = b""
        self.skipping = False

    def feed(self, data):
        if self.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                return [], []
            self.skipping = False
            data = data[nl + 1:]
        if self.rest:
            data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        problems = []
        limit = self.max_line
        if limit is not None and len(self.rest) > limit:
            problems.append(self._too_long(self.rest))
            self.rest, self.skipping = b"", True
        if not cut:
            return [], problems
        block = data[:cut - 1]
        if limit is not None and len(block) > limit:  # only then can one of its lines be too long
            lines = block.split(b"\n")
            kept = [line for line in lines if len(line) <= limit]
            if len(kept) < len(lines):
                problems.extend(self._too_long(line) for line in lines if len(line) > limit)
                if not kept:
                    return [], problems
                block = b"\n".join(kept)
        records, more = self.lines(block)
        return records, problems + more

    def finish(self):
        rest, self.rest, self.skipping = self.rest, b"", False
        return self.lines(rest) if rest.strip() else ([], [])

    def _too_long(self, line: bytes) -> tuple[str, bytes]:
        return f"line longer than max_line_bytes ({self.max_line} bytes), skipped", line[:256]

    def lines(self, block: bytes):
        """Decode a block of whole lines (without the last line break)."""
        raise NotImplementedError


class JsonLines(LineDecoder):
    def lines(self, block):
        records: list[Record] = []
        problems = []
        loads = orjson.loads
        # one check per block: most blocks hold no huge integer, and their lines need none
        fast = not has_long_digits(block)
        for line in block.split(b"\n"):
            if fast and not _deep(line):
                try:
                    doc = loads(line)
                    if type(doc) is dict:
                        records.append(doc)
                        continue
                except orjson.JSONDecodeError:
                    pass
            if not line.strip():
                continue
            try:
                records.extend(_records_of(json_loads(line)))
            except DecodeError as e:
                problems.append((f"not a JSON object: {e}", line))
        return records, problems


class Lines(LineDecoder):
    def lines(self, block):
        return [{"message": line.rstrip(b"\r").decode("utf-8", "replace")} for line in block.split(b"\n")], []


class MsgpackStream(Decoder):
    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.unpacker = msgpack.Unpacker(raw=False, unicode_errors="replace", strict_map_key=False,
                                         object_pairs_hook=edge.pairs, max_buffer_size=max_bytes or 0)
        self.broken = False

    def feed(self, data):
        if self.broken:
            return [], []
        records, problems = [], []
        try:
            self.unpacker.feed(data)
            for obj in self.unpacker:
                if isinstance(obj, dict):
                    records.append(obj)
                else:
                    problems.append((f"expected a msgpack map, got {type(obj).__name__}", sample(obj).encode()))
        except msgpack.BufferFull:
            self.broken = True
            problems.append((f"msgpack value larger than max_bytes ({self.max_bytes} bytes), "
                             "rest of the stream skipped", data))
        except (msgpack.UnpackException, ValueError, TypeError) as e:  # TypeError: a list as a map key
            # msgpack has no line breaks to resynchronise on: the rest of this stream is lost
            self.broken = True
            problems.append((f"malformed msgpack, rest of the stream skipped: {e}", data))
        records, refused = edge.checked(records)
        problems += [(f"record refused: {why}", sample(record).encode()) for record, why in refused]
        return records, problems

    def finish(self):
        cut = False
        if not self.broken:
            try:  # the start of a value that never ended makes read_bytes refuse
                cut = self.unpacker.read_bytes(1) != b""
            except ValueError:
                cut = True
        self.__init__(self.max_bytes)  # type: ignore[misc]
        return [], [("msgpack stream ends inside a value", b"")] if cut else []


DECODERS: dict[str, Callable[[int | None], Decoder]] = {
    "json": JsonDocument, "json_lines": JsonLines, "msgpack": MsgpackStream, "lines": Lines,
}


def decoder(fmt: str, max_bytes: int | None = None, max_line_bytes: int | None = None) -> Decoder:
    """`max_bytes` bounds a json document or a msgpack value, `max_line_bytes` a line; None:
    no bound (for input that is bounded already)."""
    if fmt in ("json_lines", "lines"):
        return DECODERS[fmt](max_line_bytes)
    return DECODERS[fmt](max_bytes)
