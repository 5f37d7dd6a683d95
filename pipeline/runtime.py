"""Running a checked graph: sources on their schedules, filters in line, sinks behind buffers.

Batches move synchronously from a source through every filter it feeds; the
only await on that path is putting the results into sink buffers, which is
where backpressure comes from (`overflow: block`). So per-event work never
crosses an await, and a batch is accepted once it is in every buffer it goes to.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from . import process, schedule
from .ack import Ack
from .buffer import make_buffer
from .config import ERRORS_INPUT, Component, Graph, topological
from .context import Context, RateLimitedLog
from .event import Batch, Event, Item, Packed, count_events
from .plugin import Filter, Sink, Source
from .sink_runner import SinkRunner
from .tagmatch import matcher

log = logging.getLogger("pipeline.runtime")
_limited = RateLimitedLog(log)


STATE_SAVE_EVERY = 60.0
#: the exit status when a sink's reader is gone: what a shell shows for a process SIGPIPE ended
EXIT_OUTPUT_CLOSED = 141


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


class Runtime:
    def __init__(self, graph: Graph, *, once: bool = False):
        self.graph = graph
        self.once = once
        #: component id -> the taps reading what it emits (pipeline/api/tap.py) and the
        #: dashboard's store (pipeline/api/series.py); empty but while a `pipeline tap` runs
        #: or a dashboard charts, so the hot path pays one truth test per batch
        self.taps: dict[str, list[Any]] = {}
        self.api: Any = None
        self.state_dir = graph.state_dir
        self.sources: list[Source] = []
        self.nodes: dict[str, Node] = {}
        self.consumers: dict[str, list[Node]] = {}
        self.contexts: dict[str, Context] = {}
        self.filters: list[Node] = []
        self.sinks: list[Node] = []
        self.failures: list[str] = []
        self.output_closed = False
        #: stateful filters whose last save failed, and why
        self._unsaved: dict[str, str] = {}
        self._errors_pending: list[Event] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        # a reload closes the gate and waits until no batch is between routing and the buffers
        self._gate = asyncio.Event()
        self._gate.set()
        self._busy = 0
        self._idle = asyncio.Event()
        self.source_tasks: dict[str, asyncio.Task[None]] = {}
        self.tick_tasks: dict[str, asyncio.Task[None]] = {}
        from .reload import Reloader

        self.reloader = Reloader(self)
        self.wire({c.id: self.make(c) for c in graph.components.values()})

    def make(self, comp: Component) -> Source | Node:
        """A component's plugin (and a sink's runner), not started."""
        ctx = Context(comp.id, comp.kind, state_dir=self.state_dir, once=self.once, on_error=self._error_event)
        ctx.figures = self.figures
        plugin = comp.cls(ctx, comp.conf)
        if isinstance(plugin, Source):
            return plugin
        node = Node(comp, plugin)  # type: ignore[arg-type]
        if isinstance(plugin, Sink):
            buf = make_buffer(ctx, comp.conf.buffer, chunk_max_events=comp.conf.chunk_max_events,
                              chunk_max_bytes=comp.conf.chunk_max_bytes)
            node.runner = SinkRunner(plugin, buf, self._give_up, self._on_output_closed,
                                  self._flush_errors_soon)
        return node

    def wire(self, made: dict[str, Source | Node]) -> None:
        """Route between `made` (one per component of self.graph) as self.graph says."""
        self.sources = [m for m in made.values() if isinstance(m, Source)]
        self.nodes = {cid: m for cid, m in made.items() if isinstance(m, Node)}
        self.contexts = {cid: m.ctx if isinstance(m, Source) else m.plugin.ctx for cid, m in made.items()}
        self.consumers = {ERRORS_INPUT: [], **{cid: [] for cid in made}}
        for comp in self.graph.components.values():
            for name in comp.inputs:
                self.consumers[name].append(self.nodes[comp.id])
        self.filters = [self.nodes[c.id] for c in topological(self.graph)]
        self.sinks = [n for n in self.nodes.values() if n.runner is not None]

    # ---- moving events

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
        """An empty batch routes the error records reported since the last one (a source's
        connection it closed on bad input): they would wait for the next events otherwise."""
        if not batch and not self._errors_pending:
            return
        if not self._gate.is_set():
            await self._gate.wait()
        out: list[tuple[Node, list[Item]]] = []
        if batch:
            self.contexts[producer].counters["events_out"] += len(batch)
            if self.taps:
                self._tap(producer, batch)
            self.route(producer, batch, out)
        await self._put(out, ack)

    async def emit_packed(self, producer: str, items: list[Packed], ack: Ack | None = None) -> None:
        """Packed runs go to sink buffers as they are; a filter gets them decoded (once)."""
        from .forward_protocol import unpack_items

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

    def figures(self) -> Any:
        """What the api and the internal_metrics source read (pipeline/api/figures.py)."""
        from .api.figures import Figures

        return Figures(self)

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

    async def _save_state_loop(self) -> None:
        while True:
            await asyncio.sleep(STATE_SAVE_EVERY)
            self._save_state()

    def _save_state(self) -> None:
        for node in self.filters:
            self.save_state(node)

    def save_state(self, node: Node) -> None:
        plugin = node.plugin
        if isinstance(plugin, Filter) and plugin.stateful:
            try:
                plugin.ctx.save_state(plugin.save_state())
            except OSError as e:
                log.error("filter %s: cannot save state: %s", node.id, e)
                self._unsaved[node.id] = str(e)
            else:
                self._unsaved.pop(node.id, None)

    # ---- life cycle

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        process.tune(loop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)
        loop.add_signal_handler(signal.SIGUSR1, self._on_flush_signal)
        for node in self.filters:
            self.load_state(node)
        started_sinks: list[Node] = []
        started_sources: list[Source] = []
        try:
            if self.graph.settings.api is not None:
                from .api.server import start_api

                self.api = await start_api(self, self.graph.settings.api)
            for node in self.sinks:
                await node.runner.start()  # type: ignore[union-attr]
                started_sinks.append(node)
            for source in self.sources:
                await source.start()
                started_sources.append(source)
        except Exception as e:
            log.error("cannot start: %s", e)
            self.failures.append(str(e))
            await self._shutdown(started_sources, started_sinks)
            return 1
        for node in self.filters:
            self.start_ticks(node)
        saver = None if self.once else asyncio.create_task(self._save_state_loop())
        for source in self.sources:
            self.start_source(source)
        stop_wait = asyncio.create_task(self._stopping.wait())
        # run until a signal, or until every source has finished on its own (stdin at
        # its end, --once polls done): then nothing more can come; a reload may start more
        while not self._stopping.is_set():
            pending = {t for t in self.source_tasks.values() if not t.done()}
            if self.reloader.task is not None:
                pending.add(self.reloader.task)
            if not pending:
                break
            await asyncio.wait(pending | {stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        await self.reloader.finish()
        tasks = list(self.source_tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for h in [*self.tick_tasks.values(), saver]:
            if h is not None:
                h.cancel()
        return await self._shutdown(self.sources, self.sinks)

    def load_state(self, node: Node) -> None:
        plugin = node.plugin
        if isinstance(plugin, Filter) and plugin.stateful:
            log.debug("filter %s: state kept in %s", node.id, plugin.ctx.state_path)
            state = plugin.ctx.load_state()
            if state is not None:
                plugin.load_state(state)

    def start_ticks(self, node: Node) -> None:
        if node.plugin.tick_interval and not self.once:  # type: ignore[union-attr]
            self.tick_tasks[node.id] = asyncio.create_task(schedule.ticks(self, node), name=f"ticks {node.id}")

    def start_source(self, source: Source) -> None:
        self.source_tasks[source.ctx.id] = asyncio.create_task(schedule.run_source(self, source),
                                                               name=f"source {source.ctx.id}")

    def _on_signal(self, sig: int) -> None:
        if self._stopping.is_set():
            log.warning("second %s: exiting without draining", signal.Signals(sig).name)
            raise SystemExit(1)
        log.info("%s: stopping sources, draining filters and sinks", signal.Signals(sig).name)
        self._stopping.set()

    def _on_hangup(self) -> None:
        # logrotate sends HUP after moving the files away: they are reopened even when the
        # config cannot be reloaded (an edit half done), and by the components a reload keeps
        log.info("SIGHUP: reopening files and reloading %s", self.graph.file)
        for plugin in [*self.sources, *(n.plugin for n in self.nodes.values())]:
            try:
                plugin.reopen()
            except Exception as e:
                log.error("%s %s: reopen failed: %s", plugin.kind, plugin.ctx.id, e)
        if self.once or self._stopping.is_set():
            return
        if not self.source_tasks:  # a swap must not race the start of the graph it replaces
            log.warning("SIGHUP: still starting, the config is not reloaded: send HUP again")
            return
        self.reloader.request()

    def _on_flush_signal(self) -> None:
        # fluentd's habit: USR1 writes out every buffer now, whatever its flush_interval
        log.info("SIGUSR1: flushing every buffer")
        for node in self.sinks:
            node.runner.buffer.seal()  # type: ignore[union-attr]

    def _on_output_closed(self, sink: str, reason: str) -> None:
        log.debug("sink %s: %s: stopping, exit status %d", sink, reason, EXIT_OUTPUT_CLOSED)
        self.output_closed = True
        self._stopping.set()

    async def _shutdown(self, sources: list[Source], sinks: list[Node]) -> int:
        deadline = time.monotonic() + self.graph.settings.shutdown_timeout
        for source in sources:
            try:
                await source.stop()
            except Exception as e:
                log.error("source %s: stop failed: %s", source.ctx.id, e)
        for node in self.filters:
            try:
                await self._emit_from_filter(node, node.plugin.flush())  # type: ignore[union-attr]
            except Exception as e:
                log.error("filter %s: flush failed: %s", node.id, e)
        self._save_state()
        if self._errors_pending:
            await self._flush_errors()
        ok = True
        # the errors output drains last, so that what the others give up meanwhile reaches it
        errors = self._downstream(ERRORS_INPUT)
        results: list[tuple[Node, bool]] = []
        for group in ([n for n in sinks if n not in errors], [n for n in sinks if n in errors]):
            if self._errors_pending:
                await self._flush_errors()
            results += zip(group, await asyncio.gather(*(n.runner.drain(deadline)  # type: ignore[union-attr]
                                                         for n in group)))
        for node, drained in results:
            runner: SinkRunner = node.runner  # type: ignore[assignment]
            if not drained:
                ok = False
                reason = runner.failed_reason or "shutdown_timeout reached"
                self.failures.append(f"sink {node.id}: not everything was written ({reason})")
            given_up = runner.ctx.counters["given_up"]
            if given_up:
                self.failures.append(f"sink {node.id}: {given_up} events given up ({runner.gave_up_reason})")
        self.failures += [f"filter {fid}: cannot save state: {e}" for fid, e in self._unsaved.items()]
        for source in self.sources if self.once else ():
            if source.ctx.failing:
                self.failures.append(f"source {source.ctx.id}: {source.ctx.last_failure}")
        for failure in self.failures:
            log.error("failed: %s", failure)
        self._log_summary()
        if self.api is not None:
            await self.api.stop()
        if self.output_closed:
            return EXIT_OUTPUT_CLOSED
        return 0 if ok and not self.failures else 1

    def _downstream(self, producer: str) -> set[Node]:
        found: set[Node] = set()
        todo = list(self.consumers[producer])
        while todo:
            node = todo.pop()
            if node not in found:
                found.add(node)
                todo += self.consumers[node.id]
        return found

    def _log_summary(self) -> None:
        for cid, ctx in self.contexts.items():
            counts = {k: v for k, v in ctx.counters.items() if v}
            if counts:
                log.debug("%s %s: %s", ctx.kind, cid, ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))

    def stats(self) -> dict[str, Any]:
        return {cid: dict(ctx.counters) for cid, ctx in self.contexts.items()}
