"""Writing of records for the sinks: JSON lines, msgpack, LTSV, and mackerel-agent's plugin
protocol (pipeline/codecs/mackerel.py)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import msgpack
import orjson

from ..event import Batch, Record
from .formats import json_dumps
from .mackerel import MackerelEncoder

ENCODE_FORMATS = ("json", "msgpack", "ltsv", "mackerel")
TIME_FORMATS = ("unix", "float", "iso8601")


def format_time(time_ns: int, fmt: str) -> Any:
    if fmt == "unix":
        return time_ns // 1_000_000_000
    if fmt == "float":
        return time_ns / 1e9
    secs, nanos = divmod(time_ns, 1_000_000_000)
    return f"{_stamp(secs)}.{nanos:09d}Z"


@lru_cache(maxsize=64)
def _stamp(secs: int) -> str:
    # a batch's events share a few seconds: strftime once per second, not per event
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _with_tag_time(batch: Batch, tag_key: str | None, time_key: str | None,
                   time_format: str) -> Iterable[Record]:
    if not tag_key and not time_key:
        return (r for _, _, r in batch)
    out = []
    for tag, t, record in batch:
        record = dict(record)
        # a record's own field of that name is kept: an `_errors` record's `tag` is the tag of
        # the event it tells of, a parsed line's `time` what the line said
        if tag_key and tag_key not in record:
            record[tag_key] = tag
        if time_key and time_key not in record:
            record[time_key] = format_time(t, time_format)
        out.append(record)
    return out


def _encode_json(records: Iterable[Record]) -> bytes:
    dumps = orjson.dumps
    nl = orjson.OPT_APPEND_NEWLINE
    out = []
    for r in records:
        try:
            out.append(dumps(r, option=nl))
        except TypeError:
            out.append(json_dumps(r) + b"\n")
    return b"".join(out)


def _encode_json_with(batch: Batch, tag_key: str | None, time_key: str | None, time_format: str) -> bytes:
    """JSON lines with the tag and time added, as _with_tag_time would, without copying each
    record: its JSON has `,"KEY":VALUE` put before its closing brace. A record that has one
    of the keys already (it is replaced) or none at all (no comma) takes the copying way."""
    dumps = orjson.dumps
    tag_part = b"," + dumps(tag_key) + b":" if tag_key else b""
    time_part = b"," + dumps(time_key) + b":" if time_key else b""
    out = []
    last: tuple[str, int] | None = None
    tail = b""
    for event in batch:
        tag, t, record = event
        if record and not (tag_key and tag_key in record) and not (time_key and time_key in record):
            if (tag, t) != last:
                last = tag, t
                tail = ((tag_part + dumps(tag) if tag_key else b"")
                        + (time_part + dumps(format_time(t, time_format)) if time_key else b"") + b"}\n")
            try:
                out.append(dumps(record)[:-1] + tail)
                continue
            except TypeError:  # what orjson cannot write: all of it the stdlib's way
                pass
        out.append(_encode_json(_with_tag_time([event], tag_key, time_key, time_format)))
    return b"".join(out)


def _encode_msgpack(records: Iterable[Record]) -> bytes:
    packer = msgpack.Packer(autoreset=False)
    for r in records:
        packer.pack(r)
    return packer.bytes()


def _ltsv_value(v: Any) -> str:
    if isinstance(v, str):
        s = v
    elif isinstance(v, (dict, list)):
        s = json_dumps(v).decode()
    elif v is None:
        s = ""
    elif isinstance(v, bool):
        s = "true" if v else "false"
    else:
        s = str(v)
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _encode_ltsv(records: Iterable[Record]) -> bytes:
    lines = ["\t".join(f"{k}:{_ltsv_value(v)}" for k, v in r.items()) for r in records]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _numeric_items(record: Record, prefix: str, skip: Iterable[str] = (),
                   bools: bool = False) -> Iterable[tuple[str, float | int]]:
    """(dotted name, value) of the finite numbers in a record and its maps (and `bools`)."""
    for k, v in record.items():
        if k in skip:
            continue
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            yield from _numeric_items(v, name, (), bools)
        elif isinstance(v, (int, float)) and (bools or not isinstance(v, bool)):
            if isinstance(v, float) and not math.isfinite(v):
                continue
            yield name, v


class Encoder:
    """`mackerel`: a MackerelEncoder (pipeline/codecs/mackerel.py), which the sink gives the
    fields its inputs carry and whose counters' last values it keeps between runs."""

    def __init__(self, fmt: str, tag_key: str | None = None, time_key: str | None = None,
                 time_format: str = "unix", mackerel: MackerelEncoder | None = None):
        self.fmt = fmt
        self.tag_key, self.time_key, self.time_format = tag_key, time_key, time_format
        self.mackerel = (mackerel or MackerelEncoder(None)) if fmt == "mackerel" else None

    def encode(self, batch: Batch) -> bytes:
        if self.mackerel is not None:
            return self.mackerel.encode(batch)
        if self.fmt == "json":
            if self.tag_key or self.time_key:
                return _encode_json_with(batch, self.tag_key, self.time_key, self.time_format)
            return _encode_json(r for _, _, r in batch)
        records = _with_tag_time(batch, self.tag_key, self.time_key, self.time_format)
        if self.fmt == "msgpack":
            return _encode_msgpack(records)
        return _encode_ltsv(records)

    def encode_each(self, batch: Batch) -> list[bytes]:
        """One value per event, without a line end (a Kafka record each)."""
        if self.fmt == "json" and not (self.tag_key or self.time_key):
            dumps = orjson.dumps
            out = []
            for _, _, r in batch:
                try:
                    out.append(dumps(r))
                except TypeError:  # what orjson cannot write (integers past 64 bits)
                    out.append(json_dumps(r))
            return out
        if self.fmt == "msgpack":
            packb = msgpack.packb
            return [packb(r) for r in _with_tag_time(batch, self.tag_key, self.time_key, self.time_format)]
        return [self.encode([event]).removesuffix(b"\n") for event in batch]

_INFLUX_NAME = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\\": "\\\\"})
_INFLUX_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\\": "\\\\"})


def encode_influx(batch: Batch, measurement: str | None = None,
                  tag_keys: list[str] | tuple[str, ...] = ()) -> tuple[bytes, list[Any]]:
    """InfluxDB line protocol, one line per record: `measurement` (default: the event's
    tag), the record's `tag_keys` as tags, its numbers and booleans as fields (nested maps'
    as `a.b`), the time in ns. Also the events that have no field (no line can hold them)."""
    lines, empty = [], []
    for event in batch:
        tag, t, record = event
        head = (measurement or tag).translate(_INFLUX_NAME)
        for k in tag_keys:
            v = record.get(k)
            if v is not None and v != "":
                head += f",{k.translate(_INFLUX_KEY)}={str(v).translate(_INFLUX_KEY)}"
        fields = [f"{name.translate(_INFLUX_KEY)}="
                  + (("true" if v else "false") if type(v) is bool else f"{v}i" if type(v) is int else repr(v))
                  for name, v in _numeric_items(record, "", tag_keys, bools=True)]
        if fields:
            lines.append(f"{head} {','.join(fields)} {t}\n")
        else:
            empty.append(event)
    return "".join(lines).encode(), empty
