"""Sink buffers: where accepted events wait until their sink confirms them.

Events are grouped into chunks (by count, bytes and age); the runtime's writer
takes the oldest sealed chunk, hands it to the sink, and commits it only when
the sink returned without error. A chunk that fails stays at the head and is
retried, so order is kept and nothing is dropped by a failing sink; only the
overflow policy (counted) or `retry_timeout` ever gives events up.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace

import msgpack

from ..context import Context
from ..event import Batch


@dataclass
class Chunk:
    #: None while a chunk of a file buffer is only on disk
    events: Batch | None = field(default_factory=list)
    count: int = 0
    nbytes: int = 0
    created: float = field(default_factory=time.monotonic)
    #: unique per chunk; a forward sink sends it as the ack id
    id: bytes = field(default_factory=lambda: os.urandom(16))


def estimate_bytes(batch: Batch) -> int:
    """Size of a batch as msgpack, estimated from its first record: exact sizes would
    cost a second encoding of every event; this costs one per batch."""
    if not batch:
        return 0
    tag, t, record = batch[0]
    try:
        one = len(msgpack.packb(record)) + len(tag) + 12
    except (TypeError, ValueError, OverflowError):
        one = 256
    return one * len(batch)


class Buffer:
    """The interface every buffer implements, and the in-memory one.

    put() returns once the events are accepted (the file buffer: written and fsynced).
    get() waits for the oldest sealed chunk and leaves it in place; commit() drops it.
    """

    def __init__(self, ctx: Context, conf: SimpleNamespace, *, chunk_max_events: int,
                 chunk_max_bytes: int):
        self.ctx = ctx
        self.max_bytes: int = conf.max_bytes
        self.overflow: str = conf.overflow
        self.chunk_max_events = chunk_max_events
        self.chunk_max_bytes = chunk_max_bytes
        self.sealed: deque[Chunk] = deque()
        self.open_chunk: Chunk | None = None
        self.nbytes = 0
        self._changed = asyncio.Condition()

    async def open(self) -> None:
        """Take what the buffer needs (files, locks) and recover an earlier run's chunks."""

    def close(self) -> None:
        pass

    @property
    def pending_events(self) -> int:
        return sum(c.count for c in self.sealed) + (self.open_chunk.count if self.open_chunk else 0)

    async def put(self, batch: Batch) -> None:
        if not batch:
            return
        size = estimate_bytes(batch)
        if self.nbytes + size > self.max_bytes and not await self._make_room(size, batch):
            return
        self._append(batch, size)
        async with self._changed:
            self._changed.notify_all()

    async def _make_room(self, size: int, batch: Batch) -> bool:
        """Apply the overflow policy; False if the batch is to be dropped."""
        if self.overflow == "drop_newest":
            self.ctx.count("dropped_overflow", len(batch))
            self.ctx.error(f"buffer full ({self.max_bytes} bytes): dropped the newest events",
                           kind="buffer_overflow")
            return False
        if self.overflow == "drop_oldest":
            while self.nbytes + size > self.max_bytes and len(self.sealed) > 1:
                # the head chunk may be in the writer's hands: drop the next oldest
                victim = self.sealed[1]
                del self.sealed[1]
                self._forget(victim)
                self.ctx.count("dropped_overflow", victim.count)
                self.ctx.error(f"buffer full ({self.max_bytes} bytes): dropped the oldest events",
                               kind="buffer_overflow")
            return True
        self.ctx.count("blocked")
        async with self._changed:
            # an empty buffer takes any batch, so one batch larger than max_bytes cannot hang
            await self._changed.wait_for(lambda: self.nbytes == 0 or self.nbytes + size <= self.max_bytes)
        return True

    def _append(self, batch: Batch, size: int) -> None:
        chunk = self.open_chunk
        if chunk is None:
            chunk = self.open_chunk = self._new_chunk()
        start = 0
        per_event = size / len(batch)
        while start < len(batch):
            room = self.chunk_max_events - chunk.count
            if self.chunk_max_bytes and per_event:
                room = min(room, max(1, int((self.chunk_max_bytes - chunk.nbytes) / per_event)))
            part = batch[start:start + room]
            self._store(chunk, part, int(per_event * len(part)))
            start += len(part)
            if chunk.count >= self.chunk_max_events or chunk.nbytes >= self.chunk_max_bytes:
                self.seal()
                chunk = self.open_chunk = self._new_chunk()

    def _new_chunk(self) -> Chunk:
        return Chunk()

    def _store(self, chunk: Chunk, events: Batch, size: int) -> None:
        chunk.events.extend(events)  # type: ignore[union-attr]
        chunk.count += len(events)
        chunk.nbytes += size
        self.nbytes += size

    def _forget(self, chunk: Chunk) -> None:
        self.nbytes -= chunk.nbytes

    def seal(self) -> None:
        """Close the open chunk for writing now (flush)."""
        chunk = self.open_chunk
        if chunk is not None and chunk.count:
            self.open_chunk = None
            self.sealed.append(chunk)
            self._sealed(chunk)
            self._notify()

    def _sealed(self, chunk: Chunk) -> None:
        """A chunk just closed for writing (the file buffer closes its file)."""

    def _load(self, chunk: Chunk) -> None:
        """Make `chunk.events` available (the file buffer reads them back from disk)."""

    def seal_due(self, flush_interval: float) -> None:
        chunk = self.open_chunk
        if chunk is not None and chunk.count and time.monotonic() - chunk.created >= flush_interval:
            self.seal()

    def _notify(self) -> None:
        async def wake() -> None:
            async with self._changed:
                self._changed.notify_all()
        asyncio.get_running_loop().create_task(wake())

    async def get(self, eager: bool = False) -> Chunk:
        """The oldest sealed chunk, waiting for one. `eager`: an idle writer takes the
        open chunk at once, so batches grow only while the sink is busy; measured, holding
        a second of events in memory instead made every stage slower (cache misses)."""
        def ready() -> bool:
            return bool(self.sealed) or (eager and self.open_chunk is not None and bool(self.open_chunk.count))
        async with self._changed:
            await self._changed.wait_for(ready)
        if not self.sealed:
            self.seal()
        chunk = self.sealed[0]
        self._load(chunk)
        return chunk

    def commit(self, chunk: Chunk) -> None:
        """The sink has the chunk (or it was given up): drop it for good."""
        if self.sealed and self.sealed[0] is chunk:
            self.sealed.popleft()
            self._forget(chunk)
            self._notify()


def make_buffer(ctx: Context, conf: SimpleNamespace, *, chunk_max_events: int,
                chunk_max_bytes: int) -> Buffer:
    if conf.type == "file":
        from .file import FileBuffer

        return FileBuffer(ctx, conf, chunk_max_events=chunk_max_events, chunk_max_bytes=chunk_max_bytes)
    return Buffer(ctx, conf, chunk_max_events=chunk_max_events, chunk_max_bytes=chunk_max_bytes)
