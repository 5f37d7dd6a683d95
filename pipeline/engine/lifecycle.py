"""A graph's life: start the sinks, the services (the api) and the sources; run until a signal
or until every source has finished (stdin at its end, --once); then stop the sources,
flush the filters, drain the sinks within shutdown_timeout and tell the exit status.
Stateful filters' state is loaded at start and saved every minute and at the end."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..config.graph import ERRORS_INPUT, Graph
from ..plugin import Filter, Source
from . import process, schedule
from .context import Context
from .signals import EXIT_OUTPUT_CLOSED
from .sink_runner import SinkRunner

if TYPE_CHECKING:
    from .figures import Figures
    from .reload import Reloader
    from .routing import Node
    from .runtime import Runtime

log = logging.getLogger("pipeline.runtime")

STATE_SAVE_EVERY = 60.0


class Service(Protocol):
    """Something that runs beside the graph and reads it (the api): stopped last."""

    async def stop(self) -> None: ...


#: starts a service on the running graph's figures (the command that runs the graph wires it)
StartService = Callable[["Figures"], Awaitable[Service]]


class LifeCycle:
    """The runtime's life-cycle part (pipeline/engine/runtime.py puts the parts together)."""

    graph: Graph
    once: bool
    sources: list[Source]
    filters: list[Node]
    sinks: list[Node]
    consumers: dict[str, list[Node]]
    contexts: dict[str, Context]
    failures: list[str]
    output_closed: bool
    services: list[StartService]
    running_services: list[Service]
    source_tasks: dict[str, asyncio.Task[None]]
    tick_tasks: dict[str, asyncio.Task[None]]
    reloader: Reloader
    _unsaved: dict[str, str]
    _errors_pending: list[Any]
    _stopping: asyncio.Event

    if TYPE_CHECKING:  # the other parts' methods, as the Runtime has them
        def figures(self) -> Figures: ...
        def install_signals(self, loop: asyncio.AbstractEventLoop) -> None: ...
        async def _emit_from_filter(self, node: Node, batch: Any, *, gated: bool = True) -> None: ...
        async def _flush_errors(self, ack: Any = None) -> None: ...

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

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        process.tune(loop)
        self.install_signals(loop)
        for node in self.filters:
            self.load_state(node)
        started_sinks: list[Node] = []
        started_sources: list[Source] = []
        try:
            for start in self.services:
                self.running_services.append(await start(self.figures()))
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
            self.tick_tasks[node.id] = asyncio.create_task(schedule.ticks(cast("Runtime", self), node), name=f"ticks {node.id}")

    def start_source(self, source: Source) -> None:
        self.source_tasks[source.ctx.id] = asyncio.create_task(schedule.run_source(cast("Runtime", self), source),
                                                               name=f"source {source.ctx.id}")

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
        for service in self.running_services:
            await service.stop()
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
