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
