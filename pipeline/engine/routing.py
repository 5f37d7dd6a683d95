"""Moving events: a batch a source emits runs through every filter it feeds, in line, and
goes into the buffers of the sinks it reaches; the only await on that path is putting it
into a buffer, which is where backpressure comes from (`overflow: block`).

A reload closes the gate here (pause) and waits until no batch is between routing and
the buffers; sources then wait in emit until it opens again (resume).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..config.graph import ERRORS_INPUT, Component
from ..event import Batch, Event, Item, Packed, count_events
from ..plugin import Filter, Sink
from .ack import Ack
from .context import Context
from .sink_runner import SinkRunner
from .tagmatch import matcher

log = logging.getLogger("pipeline.runtime")


class Node:
    """A filter or sink as the router sees it: its plugin and its match."""

    def __init__(self, comp: Component, plugin: Filter | Sink):
        self.id = comp.id
        self.plugin = plugin
        self.accepts: Callable[[str], bool] | None = matcher(getattr(comp.conf, "match", None))
        self.runner: SinkRunner | None = None

    def select(self, batch: Batch) -> Batch:
        accepts = self.accepts
        if accepts is None:
            return batch
        return [e for e in batch if accepts(e[0])]


class Routing:
    """The runtime's routing part (pipeline/engine/runtime.py puts the parts together)."""

    consumers: dict[str, list[Node]]
    contexts: dict[str, Context]
    taps: dict[str, list[Any]]
    _errors_pending: list[Event]
    _flushing: set[asyncio.Task[None]]
    _gate: asyncio.Event
    _busy: int
    _idle: asyncio.Event

    def route(self, producer: str, batch: Batch, out: list[tuple[Node, list[Item]]]) -> None:
        """Run `batch` through every filter downstream of `producer`; collect sink inputs."""
        for node in self.consumers[producer]:
            self._feed(node, batch, out)

    def _feed(self, node: Node, batch: Batch, out: list[tuple[Node, list[Item]]]) -> None:
        part = node.select(batch)
        if not part:
            return
        ctx = node.plugin.ctx
        ctx.counters["events_in"] += len(part)
        if node.runner is not None:
            out.append((node, part))  # type: ignore[arg-type]
            return
        try:
            result = node.plugin.process(part)  # type: ignore[union-attr]
        except Exception as e:  # a filter bug must not stop the other events
            log.debug("filter %s failed", node.id, exc_info=True)
            ctx.error(f"filter failed on a batch of {len(part)} events, batch skipped: {e!r}",
                      kind="filter_exception")
            return
        if result:
            ctx.counters["events_out"] += len(result)
            if self.taps:
                self._tap(node.id, result)
            self.route(node.id, result, out)

    async def emit(self, producer: str, batch: Batch, ack: Ack | None = None) -> None:
        if not batch:
            if self._errors_pending:  # a source's bad input with nothing good beside it
                await self._errors_later()
            return
        if not self._gate.is_set():
            await self._gate.wait()
        self.contexts[producer].counters["events_out"] += len(batch)
        if self.taps:
            self._tap(producer, batch)
        out: list[tuple[Node, list[Item]]] = []
        self.route(producer, batch, out)
        await self._put(out, ack)

    async def emit_packed(self, producer: str, items: list[Packed], ack: Ack | None = None) -> None:
        """Packed runs go to sink buffers as they are; a filter gets them decoded (once)."""
        from ..codecs.forward_protocol import unpack_items

        if not self._gate.is_set():
            await self._gate.wait()
        ctx = self.contexts[producer]
        ctx.counters["events_out"] += count_events(items)  # type: ignore[arg-type]
        out: list[tuple[Node, list[Item]]] = []
        decoded: Batch | None = None
        if self.taps and producer in self.taps:
            decoded = unpack_items(items, ctx)  # type: ignore[arg-type]
            self._tap(producer, decoded)
        for node in self.consumers[producer]:
            if node.runner is None:
                if decoded is None:
                    decoded = unpack_items(items, ctx)  # type: ignore[arg-type]
                self._feed(node, decoded, out)
                continue
            accepts = node.accepts
            part = items if accepts is None else [p for p in items if accepts(p.tag)]
            if part:
                node.plugin.ctx.counters["events_in"] += count_events(part)  # type: ignore[arg-type]
                out.append((node, part))  # type: ignore[arg-type]
        await self._put(out, ack)

    def _tap(self, producer: str, batch: Batch) -> None:
        for tap in self.taps.get(producer, ()):
            tap.offer(producer, batch)

    async def _put(self, out: list[tuple[Node, list[Item]]], ack: Ack | None = None) -> None:
        # the ack's hold for this emit: each buffer takes its own while the events are
        # in it, so what no sink gets (a filter dropped it) is delivered when this ends
        self._busy += 1
        if ack is not None:
            ack.hold()
        try:
            for node, part in out:
                await node.runner.put(part, ack)  # type: ignore[union-attr]
            if self._errors_pending:
                # the error records of these events are part of their delivery
                await self._flush_errors(ack)
            if ack is not None:
                ack.release()
        finally:
            self._busy -= 1
            if not self._busy and not self._gate.is_set():
                self._idle.set()

    async def pause(self, timeout: float) -> bool:
        """Hold every new batch before routing, and wait up to `timeout` for those on their
        way to the buffers; False (and open again) if some are still waiting then."""
        self._gate.clear()
        if self._busy:
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except TimeoutError:
                self._gate.set()
                return False
        return True

    def resume(self) -> None:
        self._gate.set()

    def _error_event(self, event: Event) -> None:
        if self.consumers[ERRORS_INPUT]:
            self._errors_pending.append(event)

    async def _flush_errors(self, ack: Ack | None = None) -> None:
        # error events are routed like any batch, but errors raised while routing
        # them are not routed again: a broken errors sink must not loop
        pending, self._errors_pending = self._errors_pending, []
        out: list[tuple[Node, list[Item]]] = []
        self.route(ERRORS_INPUT, pending, out)
        self._errors_pending = []
        for node, part in out:
            await node.runner.put(part, ack)  # type: ignore[union-attr]

    def _flush_errors_soon(self) -> None:
        """Route the error events reported outside a source's emit (by a sink's writer)."""
        if self._errors_pending:
            task = asyncio.get_running_loop().create_task(self._errors_later())
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _errors_later(self) -> None:
        # held while a reload swaps the graph, like any batch
        if not self._gate.is_set():
            await self._gate.wait()
        await self._put([])

    def _give_up(self, events: Batch, reason: str) -> None:
        log.error("gave up %d events: %s", len(events), reason)
        if self.consumers[ERRORS_INPUT]:
            for tag, t, record in events:
                self._errors_pending.append(
                    (f"pipeline.error.undelivered.{tag}", t, {"error": reason, "tag": tag, "record": record}))
            self._flush_errors_soon()

    async def _emit_from_filter(self, node: Node, batch: Batch, *, gated: bool = True) -> None:
        if batch:
            if gated and not self._gate.is_set():
                await self._gate.wait()
            node.plugin.ctx.counters["events_out"] += len(batch)
            if self.taps:  # what a tick or the final flush gives is emitted as much as process()'s
                self._tap(node.id, batch)
            out: list[tuple[Node, list[Item]]] = []
            self.route(node.id, batch, out)
            await self._put(out)

