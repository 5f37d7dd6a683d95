"""The memory buffer, and the chunk and buffer logic the file buffer builds on (file.py)."""


from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import cast

import msgpack

from ..engine.ack import Ack
from ..engine.context import Context
from ..event import Item, Packed, count_events


@dataclass(eq=False)  # chunks are told apart by identity; comparing their events would cost
class Chunk:
    #: events, or Packed runs of them; None while a chunk of a file buffer is only on disk
    events: list[Item] | None = field(default_factory=list)
    count: int = 0
    #: msgpack bytes (what a write sends), and what the chunk counts against max_bytes
    nbytes: int = 0
    held: int = 0
    created: float = field(default_factory=time.monotonic)
    #: holds Packed items (decoded for a sink that reads records)
    packed: bool = False
    #: a writer has it (several may, each its own chunk, with a sink's `max_in_flight`)
    taken: bool = False
    #: parts of it a sink has written (a sink that reads records writes Packed runs apart)
    written: int = 0
    #: acknowledgements of the events in it (memory buffer): released when it is dropped
    acks: list[Ack] = field(default_factory=list)


def estimate_bytes(batch: list[Item]) -> int:
    """Size of a batch as msgpack. Packed items are counted exactly; for events it is
    estimated from the first record: exact sizes would cost a second encoding of every
    event; this costs one per batch."""
    if not batch:
        return 0
    if type(batch[0]) is Packed:
        return sum(len(p.blob) for p in cast(list[Packed], batch))
    tag, t, record = batch[0]  # type: ignore[misc]
    try:
        one = len(msgpack.packb(record)) + len(tag) + 12
    except (TypeError, ValueError, OverflowError):
        one = 256
    return one * len(batch)


#: Events as Python objects take this many times their msgpack size (measured 4.0-5.7x for
#: uWSGI worker rows and Docker stats records): a memory buffer's max_bytes is memory.
MEMORY_PER_MSGPACK_BYTE = 5


class Buffer:
    """The interface every buffer implements, and the in-memory one.

    put() returns once the events are accepted (the file buffer: written and fsynced).
    get() waits for the oldest sealed chunk no writer has and hands it out; commit()
    drops it. A list given to put() holds events or Packed items, not both.
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
        #: the last put found no room (blocked, or dropped by the overflow policy)
        self.full = False
        self._changed = asyncio.Condition()

    async def open(self) -> None:
        """Take what the buffer needs (files, locks) and recover an earlier run's chunks."""

    def close(self) -> None:
        pass

    @property
    def pending_events(self) -> int:
        return sum(c.count for c in self.sealed) + (self.open_chunk.count if self.open_chunk else 0)

    def _weight(self, packed: bool) -> int:
        # a Packed run is one bytes object: its size is what it takes
        return 1 if packed else MEMORY_PER_MSGPACK_BYTE

    async def put(self, batch: list[Item], ack: Ack | None = None) -> None:
        """`ack`: held by each chunk the events go to, until that chunk is written by the
        sink, given up or dropped (a batch dropped here whole holds nothing)."""
        if not batch:
            return
        size = estimate_bytes(batch)
        held = size * self._weight(type(batch[0]) is Packed)
        if self.nbytes + held > self.max_bytes:
            self.full = True
            if not await self._make_room(held, batch):
                return
        else:
            self.full = False
        for part, count, nbytes in self._parts(batch, size):
            while True:
                try:
                    self._add(part, count, nbytes, ack)
                    break
                except OSError as e:  # only a file buffer writes: it waits for the disk, then again
                    await self._store_failed(e)
        async with self._changed:
            self._changed.notify_all()

    async def _make_room(self, held: int, batch: list[Item]) -> bool:
        """Apply the overflow policy to make room for `held` bytes; False if the batch is to
        be dropped."""
        if self.overflow == "drop_newest":
            self.ctx.count("dropped_overflow", count_events(batch))
            self.ctx.error(f"buffer full ({self.max_bytes} bytes): dropped the newest events",
                           kind="buffer_overflow")
            return False
        if self.overflow == "drop_oldest":
            # chunks in a writer's hands stay: they may be on their way already
            victims = (c for c in list(self.sealed) if not c.taken)
            while self.nbytes + held > self.max_bytes and (victim := next(victims, None)) is not None:
                self.sealed.remove(victim)
                self._forget(victim)
                self.ctx.count("dropped_overflow", victim.count)
                self.ctx.error(f"buffer full ({self.max_bytes} bytes): dropped the oldest events",
                               kind="buffer_overflow")
            return True
        self.ctx.count("blocked")
        async with self._changed:
            # an empty buffer takes any batch, so one batch larger than max_bytes cannot hang
            await self._changed.wait_for(lambda: self.nbytes == 0 or self.nbytes + held <= self.max_bytes)
        return True

    def _parts(self, batch: list[Item], size: int) -> Iterator[tuple[list[Item], int, int]]:
        """`batch` in the parts that fill the open chunk, then new ones: (items, events, bytes)."""
        if type(batch[0]) is Packed:
            for p in cast(list[Packed], batch):  # a Packed run is never split: it may go past chunk_max_events
                yield [p], p.count, len(p.blob)
            return
        per_event = size / len(batch)
        start = 0
        while start < len(batch):
            chunk = self.open_chunk
            count, nbytes = (chunk.count, chunk.nbytes) if chunk is not None else (0, 0)
            room = self.chunk_max_events - count
            if per_event:
                room = min(room, max(1, int((self.chunk_max_bytes - nbytes) / per_event)))
            part = batch[start:start + room]
            yield part, len(part), int(per_event * len(part))
            start += len(part)

    async def _store_failed(self, error: OSError) -> None:
        """A part of a put could not be stored (the file buffer: a full disk); it is tried
        again when this returns."""
        raise error

    def _open(self) -> Chunk:
        if self.open_chunk is None:
            self.open_chunk = self._new_chunk()
        return self.open_chunk

    def _add(self, part: list[Item], count: int, nbytes: int, ack: Ack | None = None) -> None:
        chunk = self._open()
        if chunk.count and (chunk.count + count > self.chunk_max_events
                            or chunk.nbytes + nbytes > self.chunk_max_bytes):
            self.seal()
            chunk = self._open()
        nbytes = self._store(chunk, part, nbytes)
        if ack is not None and (not chunk.acks or chunk.acks[-1] is not ack):
            ack.hold()
            chunk.acks.append(ack)
        packed = type(part[0]) is Packed
        held = nbytes * self._weight(packed)
        chunk.count += count
        chunk.nbytes += nbytes
        chunk.held += held
        chunk.packed = chunk.packed or packed
        self.nbytes += held
        if chunk.count >= self.chunk_max_events or chunk.nbytes >= self.chunk_max_bytes:
            self.seal()

    def _new_chunk(self) -> Chunk:
        return Chunk()

    def _store(self, chunk: Chunk, items: list[Item], nbytes: int) -> int:
        """Keep `items` in `chunk`; returns the bytes they take (`nbytes` estimated them)."""
        chunk.events.extend(items)  # type: ignore[union-attr]
        return nbytes

    def _forget(self, chunk: Chunk) -> None:
        self.nbytes -= chunk.held
        acks, chunk.acks = chunk.acks, []
        for ack in acks:
            ack.release()

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

    def _next(self) -> Chunk | None:
        return next((c for c in self.sealed if not c.taken), None)

    async def get(self, eager: bool = False) -> Chunk:
        """The oldest sealed chunk no writer has, waiting for one. `eager`: an idle writer
        takes the open chunk at once, so batches grow only while the sink is busy; measured,
        holding a second of events in memory instead made every stage slower (cache misses)."""
        def ready() -> bool:
            return self._next() is not None or (
                eager and self.open_chunk is not None and bool(self.open_chunk.count))
        async with self._changed:
            await self._changed.wait_for(ready)
        chunk = self._next()
        if chunk is None:
            self.seal()
            chunk = self.sealed[-1]
        chunk.taken = True
        self._load(chunk)
        return chunk

    def commit(self, chunk: Chunk) -> None:
        """The sink has the chunk (or it was given up): drop it for good."""
        if chunk in self.sealed:
            self.sealed.remove(chunk)
            self._forget(chunk)
            self._notify()
