"""Records from the body of an HTTP request: a JSON object or array of objects, NDJSON, or
msgpack (a map, an array of maps, or maps back to back). A body is all records or an error:
BodyError says where it stops parsing, so the sender is told (400) and nothing of it is taken.
"""

from __future__ import annotations

from typing import Any

import msgpack
import orjson

from . import edge
from .formats import DecodeError, json_loads
from .forward_protocol import incomplete, unpacker

#: what names NDJSON: the format, and the Content-Types in use (x-ndjson, jsonl, json-lines)
_NDJSON = ("ndjson", "jsonl", "json-lines", "jsonlines")


#: digits made "0", brackets "{", the rest " ": one pass tells long integers and nesting apart
_SCAN = bytes(48 if 48 <= i <= 57 else 123 if i in (91, 123) else 32 for i in range(256))
_TWENTY = b"0" * 20


class BodyError(ValueError):
    pass


def decode_body(body: bytes, kind: str, max_bytes: int) -> tuple[list[dict[str, Any]], bool]:
    """The records, and whether they are known to meet the rule of pipeline/edge.py already.
    `kind`: a format (json, ndjson, msgpack) or a Content-Type; JSON where it names neither
    msgpack nor NDJSON (JSON that holds several documents is read as NDJSON)."""
    if "msgpack" in kind:
        return _msgpack(body, max_bytes), False
    if not body.strip():
        return [], True
    scan = body.translate(_SCAN)
    if _TWENTY in scan:  # a long integer, which orjson would make a float
        return _by_line(body), True
    records = None
    if not any(k in kind for k in _NDJSON) and body.lstrip()[:1] in (b"[", b"{"):
        try:
            records = _records(orjson.loads(body), "the body")
        except orjson.JSONDecodeError:
            pass  # several documents (NDJSON), or an error that _by_line finds
    if records is None:
        records = _joined(body)
    if records is None:
        return _by_line(body), True
    # JSON text of n objects cannot nest past MAX_DEPTH when it holds at most MAX_DEPTH + n - 1
    # brackets (each object takes one at least): then what orjson gives (valid UTF-8, string
    # keys, no long integers here) meets the rule already
    return records, scan.count(b"{") - (len(records) - 1) <= edge.MAX_DEPTH


def _records(doc: Any, what: str) -> list[dict[str, Any]]:
    if type(doc) is dict:
        return [doc]
    if type(doc) is list:
        for i, item in enumerate(doc):
            if type(item) is not dict:
                raise BodyError(f"{what}: element {i} is not an object")
        return doc
    raise BodyError(f"{what} is not a JSON object or an array of objects")


def _joined(body: bytes) -> list[dict[str, Any]] | None:
    """NDJSON parsed as one array, its newlines made commas (JSON text holds no raw newline,
    so each line of valid NDJSON is one element): half the time of a call per line. None
    where that does not give objects (blank lines, an error). Lenient only with what is no
    NDJSON: a value broken over lines where a comma is missing at the break is read as if
    it were there."""
    try:
        doc = orjson.loads(b"[" + body.rstrip(b"\r\n").replace(b"\n", b",") + b"]")
    except orjson.JSONDecodeError:
        return None
    return doc if set(map(type, doc)) == {dict} else None


def _by_line(body: bytes) -> list[dict[str, Any]]:
    """NDJSON line by line, each made to the rule of pipeline/edge.py; BodyError names the
    first line that is not a JSON object."""
    records = []
    for n, line in enumerate(body.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            doc = json_loads(line)
        except DecodeError as e:
            raise BodyError(f"line {n}: not JSON: {e}") from None
        if type(doc) is not dict:
            raise BodyError(f"line {n}: not a JSON object")
        records.append(doc)
    return records


def _msgpack(body: bytes, max_bytes: int) -> list[dict[str, Any]]:
    unpack = unpacker(max(max_bytes, len(body)), records=True)
    unpack.feed(body)
    records: list[dict[str, Any]] = []
    try:
        for doc in unpack:
            records += _records(doc, f"msgpack value {len(records)}")
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        if isinstance(e, BodyError):
            raise
        raise BodyError(f"not msgpack: {e}") from None
    if incomplete(unpack):
        raise BodyError("msgpack cut off")
    return records
