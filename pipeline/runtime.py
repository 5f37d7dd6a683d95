"""Running a checked graph: sources on their schedules, filters in line, sinks behind buffers.

Batches move synchronously from a source through every filter it feeds; the
only await on that path is putting the results into sink buffers, which is
where backpressure comes from (`overflow: block`). So per-event work never
crosses an await, and a batch is accepted once it is in every buffer it goes to.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import random
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from .buffer import Buffer, Chunk, make_buffer
from .config import ERRORS_INPUT, Component, Graph, topological
from .context import Context
from .event import Batch, Event, Item, Packed, count_events
from .plugin import Filter, PollSource, Sink, Source, StreamSource
from .tagmatch import matcher

log = logging.getLogger("pipeline.runtime")

STATE_SAVE_EVERY = 60.0


class Node:
    """A filter or sink as the router sees it: its plugin, its match, its consumers."""

    def __init__(self, comp: Component, plugin: Filter | Sink):
        self.id = comp.id
        self.plugin = plugin
        self.is_filter = isinstance(plugin, Filter)
        self.accepts: Callable[[str], bool] | None = matcher(getattr(comp.conf, "match", None))
        self.consumers: list[Node] = []
        self.runner: SinkRunner | None = None

    def select(self, batch: Batch) -> Batch:
        accepts = self.accepts
        if accepts is None:
            return batch
        return [e for e in batch if accepts(e[0])]


class SinkRunner:
    """A sink's buffer and writer: batching, retry with backoff and jitter, drain."""

    def __init__(self, sink: Sink, buffer: Buffer, on_give_up: Callable[[Batch, str], None]):
        self.sink = sink
        self.ctx = sink.ctx
        self.conf = sink.conf
        self.buffer = buffer
        self.on_give_up = on_give_up
        self.tasks: list[asyncio.Task[None]] = []
        self.failed_reason: str | None = None

    async def start(self) -> None:
        await self.sink.start()
        await self.buffer.open()
        # only the first writer takes a chunk before it is full (flush_interval 0): the
        # others add throughput under load, and must not cut the stream into slivers
        eager = not self.conf.flush_interval
        self.tasks = [asyncio.create_task(self._writer(eager and i == 0), name=f"sink {self.ctx.id}")
                      for i in range(self.sink.max_in_flight)]
        if self.conf.flush_interval:
            self.tasks.append(asyncio.create_task(self._timer(), name=f"flush {self.ctx.id}"))

    async def _timer(self) -> None:
        period = max(0.005, min(self.conf.flush_interval / 2, 1.0))
        while True:
            await asyncio.sleep(period)
            self.buffer.seal_due(self.conf.flush_interval)

    async def _writer(self, eager: bool) -> None:
        while True:
            chunk = await self.buffer.get(eager)
            await self._deliver(chunk)
            self.buffer.commit(chunk)

    def _parts(self, chunk: Chunk) -> list[list[Item]]:
        """What the sink is given, write by write: the chunk whole, or, for a sink that reads
        records, each Packed run apart, decoded just before its write. Decoding a chunk of
        10,000 events before writing any left the records cold in the CPU caches: 8 against
        3.4 us an event to decode and write a 30-key record as JSON."""
        items = chunk.events or []  # get() has loaded them
        if not chunk.packed or self.sink.takes_packed:
            return [items]
        parts: list[list[Item]] = []
        events: list[Item] = []
        for item in items:
            if type(item) is Packed:
                if events:
                    parts.append(events)
                    events = []
                parts.append([item])
            else:
                events.append(item)
        if events:
            parts.append(events)
        return parts

    def _records(self, part: list[Item]) -> list[Item]:
        if self.sink.takes_packed or type(part[0]) is not Packed:
            return part
        from .forward_protocol import unpack_items  # only where Packed runs are: not at start-up

        return unpack_items(part, self.ctx)  # type: ignore[return-value]

    async def _deliver(self, chunk: Chunk) -> None:
        """Write the chunk part by part; a part that fails is retried, the ones before it are
        not written again."""
        started = time.monotonic()
        parts = self._parts(chunk)
        while chunk.written < len(parts):
            part = parts[chunk.written]
            batch = self._records(part)
            count = chunk.count if self.sink.takes_packed and chunk.packed else len(batch)
            reason = await self._write(batch, count, started)
            if reason is not None:
                from .forward_protocol import unpack_items

                rest = [item for part in parts[chunk.written:] for item in part]
                given_up = unpack_items(rest, self.ctx)
                self.ctx.count("given_up", len(given_up))
                self.on_give_up(given_up, reason)
                return
            chunk.written += 1

    async def _write(self, batch: list[Item], count: int, started: float) -> str | None:
        """Write `batch`, retrying with backoff; None once written, or why it was given up
        (`retry_timeout` after `started`)."""
        attempt = 0
        while True:
            try:
                await self.sink.write(batch)  # type: ignore[arg-type]  # Packed only if takes_packed
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any failure of a sink is retried, never fatal
                attempt += 1
                self.ctx.count("retries")
                reason = f"write failed: {e}" if str(e) else f"write failed: {type(e).__name__}"
                self.failed_reason = reason
                self.ctx.health("write", False, f"{reason}; retrying with backoff")
                timeout = self.conf.retry_timeout
                if timeout is not None and time.monotonic() - started >= timeout:
                    return f"{reason}; gave up after {timeout:g}s"
                # full jitter: retries of many agents after one outage do not arrive in step
                delay = min(self.conf.retry_max_interval, 0.25 * 2 ** min(attempt, 30))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                continue
            self.failed_reason = None
            self.ctx.count("events_out", count)
            self.ctx.health("write", True, "writes succeed again")
            return None

    async def drain(self, deadline: float) -> bool:
        """Write what is buffered until `deadline` (monotonic); True if all was written."""
        self.buffer.seal()
        while self.buffer.pending_events and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        left = self.buffer.pending_events
        try:
            await self.sink.stop()
        except Exception as e:
            log.error("sink %s: stop failed: %s", self.ctx.id, e)
        self.buffer.close()
        if left:
            durable = self.conf.buffer.type == "file"
            kept = "kept in the file buffer for the next run" if durable else "lost (memory buffer)"
            why = f" ({self.failed_reason})" if self.failed_reason else ""
            log.error("sink %s: %d events not written before shutdown_timeout%s: %s",
                      self.ctx.id, left, why, kept)
            return False
        return True


def _keep_freed_memory() -> None:
    """Have glibc keep freed memory for reuse instead of giving it back at once.

    Blobs, chunks and batches of records are allocated and freed all the time; with
    glibc's defaults the heap's top was handed back to the kernel and faulted in again
    for the next batch (18,000 brk calls in one benchmark run): a forward receiver spent
    1.3 s of 3 in the kernel. Freed memory past 64 MiB is still given back."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_trim_threshold, 64 << 20)
    mallopt(m_mmap_threshold, 32 << 20)


class Emitter:
    """What a stream source is given: `await emit(batch)` for events, and
    `await emit.packed(items)` for Packed runs (the forward source)."""

    __slots__ = ("runtime", "producer")

    def __init__(self, runtime: Runtime, producer: str):
        self.runtime = runtime
        self.producer = producer

    async def __call__(self, batch: Batch) -> None:
        await self.runtime.emit(self.producer, batch)

    async def packed(self, items: list[Packed]) -> None:
        await self.runtime.emit_packed(self.producer, items)


class Runtime:
    def __init__(self, graph: Graph, *, once: bool = False):
        self.graph = graph
        self.once = once
        self.state_dir = graph.state_dir
        self.sources: list[Source] = []
        self.nodes: dict[str, Node] = {}
        self.consumers: dict[str, list[Node]] = {ERRORS_INPUT: []}
        self.contexts: dict[str, Context] = {}
        self.failures: list[str] = []
        self._errors_pending: list[Event] = []
        self._stopping = asyncio.Event()
        self._build()

    def _context(self, comp: Component) -> Context:
        ctx = Context(comp.id, comp.kind, state_dir=self.state_dir, once=self.once,
                      on_error=self._error_event)
        self.contexts[comp.id] = ctx
        return ctx

    def _build(self) -> None:
        for comp in self.graph.components.values():
            plugin = comp.cls(self._context(comp), comp.conf)
            if isinstance(plugin, Source):
                self.sources.append(plugin)
            else:
                node = self.nodes[comp.id] = Node(comp, plugin)  # type: ignore[arg-type]
                if isinstance(plugin, Sink):
                    buf = make_buffer(plugin.ctx, comp.conf.buffer, chunk_max_events=comp.conf.chunk_max_events,
                                      chunk_max_bytes=comp.conf.chunk_max_bytes)
                    node.runner = SinkRunner(plugin, buf, self._give_up)
            self.consumers.setdefault(comp.id, [])
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
            self.route(node.id, result, out)

    async def emit(self, producer: str, batch: Batch) -> None:
        if not batch:
            return
        self.contexts[producer].counters["events_out"] += len(batch)
        out: list[tuple[Node, list[Item]]] = []
        self.route(producer, batch, out)
        await self._put(out)

    async def emit_packed(self, producer: str, items: list[Packed]) -> None:
        """Packed runs go to sink buffers as they are; a filter gets them decoded (once)."""
        from .forward_protocol import unpack_items

        ctx = self.contexts[producer]
        ctx.counters["events_out"] += count_events(items)  # type: ignore[arg-type]
        out: list[tuple[Node, list[Item]]] = []
        decoded: Batch | None = None
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
        await self._put(out)

    async def _put(self, out: list[tuple[Node, list[Item]]]) -> None:
        for node, part in out:
            await node.runner.buffer.put(part)  # type: ignore[union-attr]
        if self._errors_pending:
            await self._flush_errors()

    def _error_event(self, event: Event) -> None:
        if self.consumers[ERRORS_INPUT]:
            self._errors_pending.append(event)

    async def _flush_errors(self) -> None:
        # error events are routed like any batch, but errors raised while routing
        # them are not routed again: a broken errors sink must not loop
        pending, self._errors_pending = self._errors_pending, []
        out: list[tuple[Node, list[Item]]] = []
        self.route(ERRORS_INPUT, pending, out)
        self._errors_pending = []
        for node, part in out:
            await node.runner.buffer.put(part)  # type: ignore[union-attr]

    def _give_up(self, events: Batch, reason: str) -> None:
        log.error("gave up %d events: %s", len(events), reason)
        if self.consumers[ERRORS_INPUT]:
            for tag, t, record in events:
                self._errors_pending.append(
                    (f"pipeline.error.undelivered.{tag}", t, {"error": reason, "tag": tag, "record": record}))
            asyncio.get_running_loop().create_task(self._flush_errors())

    # ---- sources

    async def _poll(self, source: PollSource) -> Batch:
        try:
            return await source.poll()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.debug("source %s: poll failed", source.ctx.id, exc_info=True)
            source.ctx.health("poll", False, f"poll failed: {type(e).__name__}: {e}")
            return []

    async def _poll_loop(self, source: PollSource) -> None:
        interval = source.conf.interval
        if self.once or not interval:
            await self.emit(source.ctx.id, await self._poll(source))
            return
        while not self._stopping.is_set():
            now = time.time()
            tick = (math.floor(now / interval) + 1) * interval
            try:
                await asyncio.wait_for(self._stopping.wait(), tick - now)
                return
            except TimeoutError:
                pass
            await self.emit(source.ctx.id, await self._poll(source))
            late = time.time() - tick
            if late >= interval:
                skipped = math.floor(late / interval)
                source.ctx.count("skipped_polls", skipped)
                log.warning("source %s: poll took %.3fs, longer than interval %gs: skipped %d tick(s)",
                            source.ctx.id, late, interval, skipped)

    async def _stream(self, source: StreamSource) -> None:
        try:
            await source.run(Emitter(self, source.ctx.id))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.debug("source %s failed", source.ctx.id, exc_info=True)
            source.ctx.health("run", False, f"source failed: {type(e).__name__}: {e}")

    async def _ticks(self, node: Node) -> None:
        interval = float(node.plugin.tick_interval)  # type: ignore[union-attr, arg-type]
        while True:
            await asyncio.sleep(interval)
            await self._emit_from_filter(node, node.plugin.tick(time.time_ns()))  # type: ignore[union-attr]

    async def _emit_from_filter(self, node: Node, batch: Batch) -> None:
        if batch:
            node.plugin.ctx.counters["events_out"] += len(batch)
            out: list[tuple[Node, list[Item]]] = []
            self.route(node.id, batch, out)
            await self._put(out)

    async def _save_state_loop(self) -> None:
        while True:
            await asyncio.sleep(STATE_SAVE_EVERY)
            self._save_state()

    def _save_state(self) -> None:
        for node in self.filters:
            plugin = node.plugin
            if isinstance(plugin, Filter) and plugin.stateful:
                try:
                    plugin.ctx.save_state(plugin.save_state())
                except OSError as e:
                    log.error("filter %s: cannot save state: %s", node.id, e)

    # ---- life cycle

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> int:
        # Events in flight are many small dicts that live for a while (a chunk holds
        # thousands): with CPython's default thresholds the collector rescans them
        # over and over (measured: parsing 30,000 Docker records 3x slower). They
        # hold no cycles, so collect far less often, and never rescan start-up objects.
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)
        _keep_freed_memory()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        for node in self.filters:
            plugin = node.plugin
            if isinstance(plugin, Filter) and plugin.stateful:
                log.debug("filter %s: state kept in %s", node.id, plugin.ctx.state_path)
                state = plugin.ctx.load_state()
                if state is not None:
                    plugin.load_state(state)
        started_sinks: list[Node] = []
        started_sources: list[Source] = []
        try:
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
        helpers = [asyncio.create_task(self._ticks(n)) for n in self.filters
                   if n.plugin.tick_interval and not self.once]  # type: ignore[union-attr]
        if not self.once:
            helpers.append(asyncio.create_task(self._save_state_loop()))
        tasks = {asyncio.create_task(self._run_source(s), name=f"source {s.ctx.id}") for s in self.sources}
        stop_wait = asyncio.create_task(self._stopping.wait())
        # run until a signal, or until every source has finished on its own (stdin at
        # its end, --once polls done): then nothing more can come
        pending = set(tasks)
        while pending and not self._stopping.is_set():
            done, _ = await asyncio.wait(pending | {stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            pending -= done
        stop_wait.cancel()
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for h in helpers:
            h.cancel()
        return await self._shutdown(started_sources, started_sinks)

    def _on_signal(self, sig: int) -> None:
        if self._stopping.is_set():
            log.warning("second %s: exiting without draining", signal.Signals(sig).name)
            raise SystemExit(1)
        log.info("%s: stopping sources, draining filters and sinks", signal.Signals(sig).name)
        self._stopping.set()

    async def _run_source(self, source: Source) -> None:
        if isinstance(source, PollSource):
            await self._poll_loop(source)
        elif isinstance(source, StreamSource):
            if self.once and getattr(source, "endless", False):
                log.info("source %s: a server has no end of input; not started in --once", source.ctx.id)
                return
            await self._stream(source)

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
        results = await asyncio.gather(*(n.runner.drain(deadline) for n in sinks))  # type: ignore[union-attr]
        for node, drained in zip(sinks, results):
            if not drained:
                ok = False
                reason = node.runner.failed_reason or "shutdown_timeout reached"  # type: ignore[union-attr]
                self.failures.append(f"sink {node.id}: not everything was written ({reason})")
        for source in self.sources if self.once else ():
            if source.ctx.failing:
                self.failures.append(f"source {source.ctx.id}: {source.ctx.last_failure}")
        for failure in self.failures:
            log.error("failed: %s", failure)
        self._log_summary()
        return 0 if ok and not self.failures else 1

    def _log_summary(self) -> None:
        for cid, ctx in self.contexts.items():
            counts = {k: v for k, v in ctx.counters.items() if v}
            if counts:
                log.debug("%s %s: %s", ctx.kind, cid, ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))

    def stats(self) -> dict[str, Any]:
        return {cid: dict(ctx.counters) for cid, ctx in self.contexts.items()}
