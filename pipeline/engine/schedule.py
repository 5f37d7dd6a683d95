"""When sources run: polls aligned to the clock and never overlapping, streams read to their
end, filters' ticks. Each is a task the runtime starts and cancels; none of them lets an
exception of a plugin end it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING

from ..event import Batch, Packed
from ..plugin import PollSource, Source, StreamSource
from .ack import Ack

if TYPE_CHECKING:
    from .routing import Node
    from .runtime import Runtime

log = logging.getLogger("pipeline.runtime")


class Emitter:
    """What a stream source is given: `await emit(batch)` for events, and
    `await emit.packed(items)` for Packed runs (the forward source); either may carry an
    `ack` (pipeline/engine/ack.py) that fires once the events are delivered."""

    __slots__ = ("runtime", "producer")

    def __init__(self, runtime: Runtime, producer: str):
        self.runtime = runtime
        self.producer = producer

    async def __call__(self, batch: Batch, ack: Ack | None = None) -> None:
        await self.runtime.emit(self.producer, batch, ack)

    async def packed(self, items: list[Packed], ack: Ack | None = None) -> None:
        await self.runtime.emit_packed(self.producer, items, ack)


async def run_source(rt: Runtime, source: Source) -> None:
    if isinstance(source, PollSource):
        await _poll_loop(rt, source)
    elif isinstance(source, StreamSource):
        if rt.once and getattr(source, "endless", False):
            log.info("source %s: a server has no end of input; not started in --once", source.ctx.id)
            return
        await _stream(rt, source)


async def poll(source: PollSource) -> Batch:
    begun = time.perf_counter()
    try:
        return await source.poll()
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.debug("source %s: poll failed", source.ctx.id, exc_info=True)
        source.ctx.health("poll", False, f"poll failed: {type(e).__name__}: {e}")
        return []
    finally:
        source.ctx.observe("poll_duration_seconds", time.perf_counter() - begun)

async def _poll_loop(rt: Runtime, source: PollSource) -> None:
    interval = source.conf.interval
    if rt.once or not interval:
        await rt.emit(source.ctx.id, await poll(source))
        return
    while not rt._stopping.is_set():
        now = time.time()
        tick = (math.floor(now / interval) + 1) * interval
        try:
            await asyncio.wait_for(rt._stopping.wait(), tick - now)
            return
        except TimeoutError:
            pass
        await rt.emit(source.ctx.id, await poll(source))
        late = time.time() - tick
        if late >= interval:
            skipped = math.floor(late / interval)
            source.ctx.count("skipped_polls", skipped)
            log.warning("source %s: poll took %.3fs, longer than interval %gs: skipped %d tick(s)",
                        source.ctx.id, late, interval, skipped)

async def _stream(rt: Runtime, source: StreamSource) -> None:
    try:
        await source.run(Emitter(rt, source.ctx.id))
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.debug("source %s failed", source.ctx.id, exc_info=True)
        source.ctx.health("run", False, f"source failed: {type(e).__name__}: {e}")

async def ticks(rt: Runtime, node: Node) -> None:
    interval = float(node.plugin.tick_interval)  # type: ignore[union-attr, arg-type]
    while True:
        await asyncio.sleep(interval)
        if not rt._gate.is_set():  # what tick() takes from the filter must reach the buffers
            await rt._gate.wait()
        try:
            due = node.plugin.tick(time.time_ns())  # type: ignore[union-attr]
        except Exception as e:  # a filter bug must not end its ticks for the rest of the run
            log.debug("filter %s: tick failed", node.id, exc_info=True)
            node.plugin.ctx.error(f"tick failed: {e!r}", kind="filter_exception")
            continue
        await rt._emit_from_filter(node, due)
