"""Taps: the events components emit, copied to a `pipeline tap` while it reads.

The runtime hands each tapped batch to offer(), which only appends to a bounded queue:
what does not fit is dropped and counted, so a slow reader never slows the pipeline.
The stream sends the queue as JSON lines and, whenever the count of drops changed, a
`{"dropped": N}` line, so the reader can say at the end how much it missed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import orjson

from ..event import Batch, Event
from ..formats import format_time
from ..tagmatch import matcher
from .server import Request, Response, json_response

if TYPE_CHECKING:
    from ..runtime import Runtime

#: events a tap holds for its reader; past that, new ones are dropped
QUEUE_EVENTS = 1000
#: events serialised in one piece: the event loop is not held longer than that takes
PIECE_EVENTS = 200
#: how often a tap with nothing to send looks whether its reader is still there
IDLE_SECONDS = 1.0

_DUMPS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


class Tap:
    def __init__(self, match: str | None, limit: int | None, size: int = QUEUE_EVENTS):
        self.accepts = matcher(match)
        self.limit = limit
        self.size = size
        self.queue: deque[tuple[str, Event]] = deque()
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
        if not events:
            return
        room = self.size - len(self.queue)
        if room < len(events):
            self.dropped += len(events) - max(room, 0)
            events = events[:max(room, 0)]
        self.queue.extend((producer, e) for e in events)
        self.wake.set()

    async def lines(self) -> AsyncGenerator[bytes, None]:
        sent = told = 0
        while self.limit is None or sent < self.limit:
            if self.closed and not self.queue:
                break
            if not self.queue:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), IDLE_SECONDS)
                except TimeoutError:
                    yield b""
                    continue
            out: list[bytes] = []
            while self.queue and len(out) < PIECE_EVENTS and (self.limit is None or sent < self.limit):
                producer, (tag, t, record) = self.queue.popleft()
                out.append(orjson.dumps({"component": producer, "tag": tag, "time": format_time(t, "iso8601"),
                                         "record": record}, default=repr, option=_DUMPS))
                sent += 1
            if self.dropped != told:
                told = self.dropped
                out.append(orjson.dumps({"dropped": told}, option=_DUMPS))
            yield b"".join(out)
        end = "stopped" if self.closed and (self.limit is None or sent < self.limit) else "limit"
        yield orjson.dumps({"dropped": self.dropped, "end": end}, option=_DUMPS)


def _problem(runtime: Runtime, ids: list[str], limit: str | None) -> tuple[int, str] | None:
    comps = runtime.graph.components
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
    return None


def tap_response(runtime: Runtime, req: Request) -> Response:
    ids = req.query.get("id", [])
    limit = req.arg("limit")
    problem = _problem(runtime, ids, limit)
    if problem is not None:
        return json_response({"error": problem[1]}, problem[0])
    tap = Tap(req.arg("match"), int(limit) if limit else None)

    async def stream() -> AsyncGenerator[bytes, None]:
        for cid in ids:
            runtime.taps.setdefault(cid, []).append(tap)
        try:
            async for piece in tap.lines():
                yield piece
        finally:
            for cid in ids:
                taps = runtime.taps.get(cid, [])
                if tap in taps:
                    taps.remove(tap)
                if not taps:
                    runtime.taps.pop(cid, None)  # untapped again: the hot path's test is false

    return Response(200, content_type="application/x-ndjson", stream=stream())
