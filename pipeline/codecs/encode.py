"""Writing of records for the sinks: JSON lines, msgpack, LTSV, mackerel-agent's plugin protocol."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import msgpack
import orjson

from ..event import Batch, Record, get_path
from .formats import json_dumps

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


_MACKEREL_BAD = re.compile(r"[^A-Za-z0-9._-]")
#: the graph of names that have no dot: mackerel-agent defines a graph's metrics as
#: GRAPH.METRIC, so a name of one part could never have a graph of its own
MACKEREL_GRAPH = "pipeline"


def _numeric_items(record: Record, prefix: str, skip: Iterable[str] = ()) -> Iterable[tuple[str, float | int]]:
    for k, v in record.items():
        if k in skip:
            continue
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            yield from _numeric_items(v, name)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            if isinstance(v, float) and not math.isfinite(v):
                continue
            yield name, v


def _name_part(value: Any) -> str:
    # one part, whatever the value: a dot in it would make a name no graph's `#` matches
    text = "" if value is None else _MACKEREL_BAD.sub("_", str(value)).replace(".", "_")
    return text or "_"


def encode_mackerel(batch: Batch, prefix: str = "", name_by: list[str] | tuple[str, ...] = ()) -> bytes:
    """mackerel-agent's plugin protocol: `name<TAB>value<TAB>epoch` per numeric field; with
    `name_by`, each record's names are PREFIX.VALUE.FIELD, VALUE its own `name_by` fields'."""
    out = []
    for _, t, record in batch:
        epoch = t // 1_000_000_000
        head = ".".join([prefix] * bool(prefix) + [_name_part(get_path(record, k)) for k in name_by])
        for name, v in _numeric_items(record, head, name_by):
            name = _MACKEREL_BAD.sub("_", name)
            if "." not in name:
                name = f"{MACKEREL_GRAPH}.{name}"
            out.append(f"{name}\t{v}\t{epoch}\n")
    return "".join(out).encode()


_PATTERN_BAD = re.compile(r"[^A-Za-z0-9_*-]")


def mackerel_graphs(paths: Iterable[tuple[str, ...]], prefix: str = "",
                    name_by: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The graph definitions mackerel-agent asks a plugin for (MACKEREL_AGENT_PLUGIN_META=1),
    for the names encode_mackerel gives records with these field paths (pipeline/config/fields.py):
    a graph per name minus its last part, the last part a metric of it. A part that varies
    (a worker's id from `name_by`, a listener's key) is `#` in a graph name and `*` as a metric,
    the wildcards mackerel-agent's plugins use; lists are not printed, so neither defined."""
    graphs: dict[str, dict[str, Any]] = {}
    head = prefix.split(".") * bool(prefix) + ["*"] * len(name_by)
    for path in paths:
        if "[*]" in path or (len(path) == 1 and path[0] in name_by):
            continue
        parts = head + [_PATTERN_BAD.sub("_", p) for p in ".".join(path).split(".")]
        if len(parts) == 1:
            parts.insert(0, MACKEREL_GRAPH)
        graph = ".".join("#" if "*" in p else p for p in parts[:-1])
        metric = "*" if "*" in parts[-1] else parts[-1]
        entry = graphs.setdefault(graph, {"label": graph, "unit": "float", "metrics": []})
        if all(m["name"] != metric for m in entry["metrics"]):
            entry["metrics"].append({"name": metric, "label": metric})
    return graphs


class Encoder:
    def __init__(self, fmt: str, tag_key: str | None = None, time_key: str | None = None,
                 time_format: str = "unix", prefix: str = "", name_by: list[str] | tuple[str, ...] = ()):
        self.fmt = fmt
        self.tag_key, self.time_key, self.time_format = tag_key, time_key, time_format
        self.prefix = prefix
        self.name_by = name_by

    def encode(self, batch: Batch) -> bytes:
        if self.fmt == "mackerel":
            return encode_mackerel(batch, self.prefix, self.name_by)
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
