"""Events and batches.

An event is a plain tuple `(tag, time_ns, record)`: tuples are the cheapest
object CPython builds and unpacks, and every component handles events in
batches (lists), so the per-event cost is one loop iteration. Records are
shared between branches of the graph: a filter that changes one builds a new dict.
"""

from __future__ import annotations

import time
from typing import Any

Record = dict[str, Any]
Event = tuple[str, int, Record]
Batch = list[Event]


class Packed:
    """Events of one tag still in the forward protocol's PackedForward form: msgpack
    `[EventTime, record]` entries back to back, framing checked, records not decoded.

    A forward source hands these on as they came; buffers store them as they are and a
    forward sink sends them on as they are. Only a filter, or a sink that reads records,
    has them decoded (`forward_protocol.unpack_packed`), so a relay never pays per event.
    """

    __slots__ = ("tag", "blob", "count", "origin")

    def __init__(self, tag: str, blob: bytes, count: int, origin: str = ""):
        self.tag = tag
        self.blob = blob
        self.count = count
        self.origin = origin

    def __repr__(self) -> str:
        return f"Packed({self.tag!r}, {self.count} events, {len(self.blob)} bytes)"


#: what a buffer holds and a sink that takes Packed is given
Item = Event | Packed


def count_events(items: list[Item]) -> int:
    return sum(i.count if isinstance(i, Packed) else 1 for i in items)


def now_ns() -> int:
    return time.time_ns()


def get_path(record: Any, path: str) -> Any:
    """`record[path]`, or the nested value at the dotted `path` (`worker.id`), or None."""
    if isinstance(record, dict) and path in record:
        return record[path]
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value
