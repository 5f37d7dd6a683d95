"""Sink buffers: where accepted events wait until their sink confirms them.

Events are grouped into chunks (by count, bytes and age); the runtime's writer
takes the oldest sealed chunk, hands it to the sink, and commits it only when
the sink returned without error. A chunk that fails stays with its writer and is
retried, so with one writer order is kept, and nothing is dropped by a failing
sink; only the overflow policy (counted) or `retry_timeout` ever gives events up.
"""

from __future__ import annotations

from types import SimpleNamespace

from ..engine.context import Context
from .memory import Buffer


def make_buffer(ctx: Context, conf: SimpleNamespace, *, chunk_max_events: int,
                chunk_max_bytes: int) -> Buffer:
    if conf.type == "file":
        from .file import FileBuffer

        return FileBuffer(ctx, conf, chunk_max_events=chunk_max_events, chunk_max_bytes=chunk_max_bytes)
    return Buffer(ctx, conf, chunk_max_events=chunk_max_events, chunk_max_bytes=chunk_max_bytes)
