"""Taps: the events components emit, copied to a `pipeline tap` while it reads.

The runtime hands each tapped batch to offer(), which only appends it to a bounded queue:
what does not fit is dropped and counted, so a slow reader never slows the pipeline. A tap
also takes at most `rate` events a second (default 1000; 0: all), as Vector's tap samples:
copying every event of a busy pipeline to a reader costs the pipeline about what one more
JSON sink would, which no look inside should.
Everything here is per batch, not per event: the queue holds batches, and the stream sends
each as one JSON line `{"component": ID, "events": [[tag, time_ns, record], ...]}` made by
one orjson call, so the pipeline's cost is a C loop; `pipeline tap`, in its own process,
turns them into a line per event. Whenever the count of drops changed, a `{"dropped": N}`
line follows, so the reader can say at the end how much it missed.

What taps hold is bounded in bytes, each (TAP_BYTES) and all together (TAPS_BYTES, shared
out among them): a tap whose reader does not keep up drops what does not fit and is told
so, and the others go on. 500 taps that never read once held 1,000 events each, and their
sockets megabytes each: the pipeline went from 689k to 30k events/s and kept 260 MiB after
they left. When the last tap goes, the memory they took is handed back to the system.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import socket
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, Callable
from operator import itemgetter
from typing import TYPE_CHECKING

import orjson

from ..codecs.formats import json_dumps
from ..engine.tagmatch import PatternError, matcher
from ..event import Batch
from .messages import Request, Response, json_response

if TYPE_CHECKING:
    from ..engine.figures import Figures

#: events a tap holds for its reader; past that, new ones are dropped
QUEUE_EVENTS = 1000
#: bytes (as JSON) a tap holds for its reader, in its queue and in its socket's buffers
TAP_BYTES = 1024 * 1024
#: bytes all taps together hold: each may take its share of it at most
TAPS_BYTES = 16 * 1024 * 1024
#: the kernel's send buffer of a tap's socket: Linux grows it to megabytes for a reader
#: that does not read, out of the budget's sight
SOCKET_BUFFER = 64 * 1024
#: events a tap takes a second unless it asks for another rate
RATE = 1000
#: events serialised in one piece: the event loop is not held longer than that takes
PIECE_EVENTS = 200
#: how long a tap with less than a piece waits for more: a few small batches go out in one
#: write, and the event loop wakes for a tap a few times a second, not once per batch
LINGER_SECONDS = 0.05
#: how often a tap with nothing to send looks whether its reader is still there
IDLE_SECONDS = 1.0


class _Budget:
    """The bytes all taps of this process hold, and how many taps there are."""

    def __init__(self) -> None:
        self.held = 0
        self.taps = 0

    def share(self) -> int:
        return min(TAP_BYTES, TAPS_BYTES // max(self.taps, 1))


BUDGET = _Budget()


def _give_back() -> None:
    """Hand freed heap memory back to the system (glibc keeps it otherwise: many small
    JSON pieces freed out of order leave no free block at the heap's top to shrink)."""
    gc.collect()  # connections end in reference cycles (transport, protocol, reader)
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc: its allocator does what it does
        pass


class _Tags:
    """The tags of the batch being offered to every tap, counted once for all of them (the
    batch is held until the next one, so `is` cannot mistake another for it)."""

    batch: Batch | None = None
    counts: Counter[str] = Counter()


def _tag_counts(batch: Batch) -> Counter[str]:
    if _Tags.batch is not batch:
        _Tags.batch, _Tags.counts = batch, Counter(map(itemgetter(0), batch))
    return _Tags.counts


class Tap:
    def __init__(self, match: str | None, limit: int | None, rate: int = RATE, size: int = QUEUE_EVENTS):
        self.accepts = matcher(match, regex=False)
        self.limit = limit
        self.rate = rate
        self.size = size
        #: the end of this second's window, and what it still takes
        self.window_end = 0.0
        self.window_left = rate
        self.queue: deque[tuple[str, Batch, int]] = deque()
        #: events in the queue, and their bytes as JSON (estimated from the first of a batch)
        self.queued = 0
        self.queued_bytes = 0
        #: bytes written to the reader's socket that it has not taken yet
        self.unsent: Callable[[], int] = lambda: 0
        self.dropped = 0
        self.wake = asyncio.Event()
        self.closed = False

    def close(self) -> None:
        """The pipeline is stopping: send what is queued, then end the stream."""
        self.closed = True
        self.wake.set()

    def attach(self) -> None:
        BUDGET.taps += 1

    def detach(self) -> None:
        """The reader is gone: what the tap held is freed, and given back once no tap is left."""
        BUDGET.held -= self.queued_bytes
        BUDGET.taps -= 1
        self.queue.clear()
        self.queued = self.queued_bytes = 0
        if not BUDGET.taps:
            _Tags.batch, _Tags.counts = None, Counter()
            _give_back()

    def offer(self, producer: str, batch: Batch) -> None:
        # per batch, not per event: the tags are counted once for every tap (a tap per event
        # cost 500 taps' worth of matcher calls an event), and nothing is looked at when the
        # tap has no room
        accepts = self.accepts
        tags = None
        matched = len(batch)
        if accepts is not None:
            counts = _tag_counts(batch)
            tags = {tag for tag in counts if accepts(tag)}
            matched = sum(counts[tag] for tag in tags)
            if matched == len(batch):
                tags = None
        if not matched:
            return
        room = self.size - self.queued
        if self.rate:
            now = time.monotonic()
            if now >= self.window_end:
                self.window_end, self.window_left = now + 1.0, self.rate
            room = min(room, self.window_left)
        if room > 0:
            per_event = len(json_dumps(batch[0])) + 1
            room_bytes = min(BUDGET.share() - self.unsent(), TAPS_BYTES - BUDGET.held) - self.queued_bytes
            room = min(room, room_bytes // per_event)
        if matched > room:
            self.dropped += matched - max(room, 0)
        if room <= 0:
            return
        # a copy (one C slice): what a tap holds is not changed by whoever has the batch next
        events = batch[:room] if tags is None else [e for e in batch if e[0] in tags][:room]
        nbytes = per_event * len(events)
        self.queue.append((producer, events, nbytes))
        self.queued += len(events)
        self.queued_bytes += nbytes
        BUDGET.held += nbytes
        self.window_left -= len(events)
        if self.queued >= PIECE_EVENTS or self.queued == len(events):  # a piece's worth, or the first
            self.wake.set()

    def _piece(self, limit: int | None) -> tuple[bytes, int]:
        """The next piece to send, of at most `limit` events, and how many it holds."""
        out: list[bytes] = []
        taken = 0
        while self.queue and taken < PIECE_EVENTS and (limit is None or taken < limit):
            producer, events, nbytes = self.queue.popleft()
            self.queued -= len(events)
            self.queued_bytes -= nbytes
            BUDGET.held -= nbytes
            if limit is not None and taken + len(events) > limit:
                events = events[:limit - taken]
            out.append(json_dumps({"component": producer, "events": events}) + b"\n")
            taken += len(events)
        return b"".join(out), taken

    async def lines(self) -> AsyncGenerator[bytes, None]:
        sent = told = 0
        limit = self.limit
        while limit is None or sent < limit:
            if not self.queue:
                if self.closed:
                    break
                self.wake.clear()
                try:
                    async with asyncio.timeout(IDLE_SECONDS):
                        await self.wake.wait()
                except TimeoutError:
                    yield b""
                    continue
            if self.queued < PIECE_EVENTS and not self.closed:
                self.wake.clear()
                try:
                    async with asyncio.timeout(LINGER_SECONDS):
                        await self.wake.wait()
                except TimeoutError:
                    pass
            piece, taken = self._piece(None if limit is None else limit - sent)
            sent += taken
            if self.dropped != told:
                told = self.dropped
                piece += orjson.dumps({"dropped": told}, option=orjson.OPT_APPEND_NEWLINE)
            # nothing of it stays here while the reader is waited for: a tap whose reader does
            # not read holds only what its socket's buffer does
            yield piece
            piece = b""
        end = "stopped" if self.closed and (limit is None or sent < limit) else "limit"
        yield orjson.dumps({"dropped": self.dropped, "end": end}, option=orjson.OPT_APPEND_NEWLINE)


def _problem(figures: Figures, ids: list[str], limit: str | None, rate: str | None) -> tuple[int, str] | None:
    comps = figures.graph.components
    tappable = [c.id for c in comps.values() if c.kind != "sink"]
    if not ids:
        return 400, "name the components to tap: ?id=ID&id=ID2"
    for cid in ids:
        comp = comps.get(cid)
        if comp is None:
            return 404, f"no component {cid!r}; sources and filters: {', '.join(tappable)}"
        if comp.kind == "sink":
            return 400, f"{cid!r} is a sink: it emits nothing; tap its inputs ({', '.join(comp.inputs)})"
    if limit is not None and not (_number(limit) and int(limit) > 0):
        return 400, f"limit must be a positive number, got {limit!r}"
    if rate is not None and not _number(rate):
        return 400, f"rate must be a number of events a second (0: all), got {rate!r}"
    return None


def _number(text: str) -> bool:
    # str.isdigit() takes "²", which int() refuses; 18 digits fit any count
    return text.isascii() and text.isdigit() and len(text) <= 18


def tap_response(figures: Figures, req: Request) -> Response:
    ids = req.query.get("id", [])
    limit = req.arg("limit")
    rate = req.arg("rate")
    problem = _problem(figures, ids, limit, rate)
    if problem is not None:
        return json_response({"error": problem[1]}, problem[0])
    try:
        tap = Tap(req.arg("match"), int(limit) if limit else None, RATE if rate is None else int(rate))
    except PatternError as e:
        return json_response({"error": f"match: {e}"}, 400)

    async def stream() -> AsyncGenerator[bytes, None]:
        for cid in ids:
            figures.taps.setdefault(cid, []).append(tap)
        tap.attach()
        try:
            async for piece in tap.lines():
                yield piece
        finally:
            for cid in ids:
                taps = figures.taps.get(cid, [])
                if tap in taps:
                    taps.remove(tap)
                if not taps:
                    figures.taps.pop(cid, None)  # untapped again: the hot path's test is false
            tap.detach()

    def on_socket(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        # drain() waits past this: what a reader has not taken stays within its share
        writer.transport.set_write_buffer_limits(high=SOCKET_BUFFER // 4)
        tap.unsent = writer.transport.get_write_buffer_size

    return Response(200, content_type="application/x-ndjson", stream=stream(), on_socket=on_socket)
