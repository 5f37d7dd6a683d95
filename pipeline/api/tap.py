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
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import orjson

from ..codecs.formats import json_dumps
from ..engine.tagmatch import matcher
from ..event import Batch
from .messages import Request, Response, json_response

if TYPE_CHECKING:
    from ..engine.figures import Figures

#: events a tap holds for its reader; past that, new ones are dropped
QUEUE_EVENTS = 1000
#: events a tap takes a second unless it asks for another rate
RATE = 1000
#: events serialised in one piece: the event loop is not held longer than that takes
PIECE_EVENTS = 200
#: how long a tap with less than a piece waits for more: a few small batches go out in one
#: write, and the event loop wakes for a tap a few times a second, not once per batch
LINGER_SECONDS = 0.05
#: how often a tap with nothing to send looks whether its reader is still there
IDLE_SECONDS = 1.0


class Tap:
    def __init__(self, match: str | None, limit: int | None, rate: int = RATE, size: int = QUEUE_EVENTS):
        self.accepts = matcher(match)
        self.limit = limit
        self.rate = rate
        self.size = size
        #: the end of this second's window, and what it still takes
        self.window_end = 0.0
        self.window_left = rate
        self.queue: deque[tuple[str, Batch]] = deque()
        #: events in the queue
        self.queued = 0
        self.dropped = 0
        self.wake = asyncio.Event()
        self.closed = False

    def close(self) -> None:
        """The pipeline is stopping: send what is queued, then end the stream."""
        self.closed = True
        self.wake.set()

    def offer(self, producer: str, batch: Batch) -> None:
        accepts = self.accepts
        events = batch if accepts is None else [e for e in batch if accepts(e[0])]
        room = self.size - self.queued
        if self.rate:
            now = time.monotonic()
            if now >= self.window_end:
                self.window_end, self.window_left = now + 1.0, self.rate
            room = min(room, self.window_left)
        if len(events) > room:
            self.dropped += len(events) - max(room, 0)
        if not events or room <= 0:
            return
        # a copy (one C slice): what a tap holds is not changed by whoever has the batch next
        events = events[:room]
        self.queue.append((producer, events))
        self.queued += len(events)
        self.window_left -= len(events)
        if self.queued >= PIECE_EVENTS or self.queued == len(events):  # a piece's worth, or the first
            self.wake.set()

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
            out: list[bytes] = []
            piece = 0
            while self.queue and piece < PIECE_EVENTS and (limit is None or sent < limit):
                producer, events = self.queue.popleft()
                self.queued -= len(events)
                if limit is not None and sent + len(events) > limit:
                    events = events[:limit - sent]
                out.append(json_dumps({"component": producer, "events": events}) + b"\n")
                sent += len(events)
                piece += len(events)
            if self.dropped != told:
                told = self.dropped
                out.append(orjson.dumps({"dropped": told}, option=orjson.OPT_APPEND_NEWLINE))
            yield b"".join(out)
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
    if limit is not None and not (limit.isdigit() and int(limit) > 0):
        return 400, f"limit must be a positive number, got {limit!r}"
    if rate is not None and not rate.isdigit():
        return 400, f"rate must be a number of events a second (0: all), got {rate!r}"
    return None


def tap_response(figures: Figures, req: Request) -> Response:
    ids = req.query.get("id", [])
    limit = req.arg("limit")
    rate = req.arg("rate")
    problem = _problem(figures, ids, limit, rate)
    if problem is not None:
        return json_response({"error": problem[1]}, problem[0])
    tap = Tap(req.arg("match"), int(limit) if limit else None, RATE if rate is None else int(rate))

    async def stream() -> AsyncGenerator[bytes, None]:
        for cid in ids:
            figures.taps.setdefault(cid, []).append(tap)
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

    return Response(200, content_type="application/x-ndjson", stream=stream())
