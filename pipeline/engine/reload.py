"""Reloading the config on SIGHUP: check the file, then swap the graph while it runs.

A config that does not pass `check` is refused and the running graph goes on. Otherwise
the runtime holds every batch before routing (sources wait in `emit`, a forward sender
waits for its ack) and, once none is on its way to a buffer, the components whose
config changed or went away are stopped and drained while nothing new can reach them:
so each event is in exactly one buffer, old or new, and none is routed to a sink that
is gone. Components whose config is the same keep running untouched (a forward source
keeps its listening socket, a filter its state, a sink its buffer); changing only
`inputs` or `match` rewires a component without restarting it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.graph import Component, ConfigError, Graph, load_config
from ..event import Item, Packed, count_events
from ..plugin import Filter, Source
from .routing import Node

if TYPE_CHECKING:
    from .runtime import Runtime
    from .sink_runner import SinkRunner

log = logging.getLogger("pipeline.reload")

#: options that only place a component in the graph: a change rewires it, it keeps running
WIRING = ("inputs", "match")
#: top-level settings read once at start (the contexts and the log hold them)
START_ONLY = ("state_dir", "log_level")


def _own_config(comp: Component) -> dict[str, Any]:
    return {k: v for k, v in comp.raw.items() if k not in WIRING}


@dataclass
class Plan:
    """How the new graph differs from the running one, by component id."""

    kept: list[str] = field(default_factory=list)
    #: same id, other config: the old one is stopped, a new one started in its place
    replaced: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def stopped(self) -> set[str]:
        return {*self.replaced, *self.removed}

    @property
    def started(self) -> list[str]:
        return [*self.replaced, *self.added]


def diff(old: Graph, new: Graph) -> Plan:
    plan = Plan()
    for cid, comp in new.components.items():
        before = old.components.get(cid)
        if before is None:
            plan.added.append(cid)
        elif before.kind == comp.kind and before.cls is comp.cls and _own_config(before) == _own_config(comp):
            plan.kept.append(cid)
        else:
            plan.replaced.append(cid)
    plan.removed = [cid for cid in old.components if cid not in new.components]
    return plan


class Reloader:
    """One reload at a time; a HUP during a reload asks for one more after it."""

    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.task: asyncio.Task[None] | None = None
        self._again = False

    def request(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(), name="reload")
        else:
            self._again = True

    async def finish(self) -> None:
        """Wait for a reload under way (a stop does not cut one in half)."""
        self._again = False
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            while True:
                self._again = False
                try:
                    await reload(self.rt)
                except Exception:  # a reload must never end the pipeline that runs
                    log.exception("reload failed")
                if not self._again or self.rt._stopping.is_set():
                    return
        finally:
            self.task = None


async def reload(rt: Runtime) -> bool:
    """Check the config file and put its graph in place of the running one; False if refused."""
    path = rt.graph.file
    try:
        new = await asyncio.to_thread(load_config, path)
    except ConfigError as e:
        for line in e.errors.lines():
            log.error("%s", line)
        n = len(e.errors.items)
        log.error("%s: reload refused, %d problem%s: the running config goes on", path, n, "s" if n != 1 else "")
        return False
    for line in new.warnings:
        log.warning("%s", line.replace(": warning: ", ": ", 1))
    old = rt.graph
    for name in START_ONLY:
        if getattr(old.settings, name) != getattr(new.settings, name):
            log.warning("%s: %s is read at start only: restart to change it", path, name)
            setattr(new.settings, name, getattr(old.settings, name))
    plan = diff(old, new)
    try:
        made = {cid: rt.make(new.components[cid]) for cid in plan.started}
    except Exception as e:
        log.error("%s: reload refused: cannot set up the new components: %s", path, e)
        return False
    timeout = new.settings.shutdown_timeout
    if not await rt.pause(timeout):
        log.error("%s: reload refused: events still waiting for room in a full buffer after "
                  "shutdown_timeout (%gs): the running config goes on", path, timeout)
        return False
    try:
        await _swap(rt, new, plan, made, time.monotonic() + timeout)
    finally:
        rt.resume()
    log.info("%s: reloaded: %s", path, _summary(plan))
    return True


def _summary(plan: Plan) -> str:
    parts = [f"{what} {', '.join(ids)}" for what, ids in
             (("started", plan.added), ("restarted", plan.replaced), ("stopped", plan.removed)) if ids]
    return "; ".join(parts) or "no component changed"


async def _swap(rt: Runtime, new: Graph, plan: Plan, made: dict[str, Source | Node], deadline: float) -> None:
    stopped = plan.stopped
    for source in [s for s in rt.sources if s.ctx.id in stopped]:
        await _stop_source(rt, source)
    old_nodes = rt.nodes
    for cid in stopped & rt.tick_tasks.keys():
        rt.tick_tasks.pop(cid).cancel()
    _carry_counters(rt, made)
    held: dict[str, Any] = {}
    for node in rt.filters:  # in the graph's order: what one flushes reaches the next
        if node.id not in stopped:
            continue
        successor = made.get(node.id)
        plugin: Filter = node.plugin  # type: ignore[assignment]
        if plugin.stateful and successor is not None and type(getattr(successor, "plugin", None)) is type(plugin):
            held[node.id] = plugin.save_state()  # a rate goes on from its last sample
            continue
        await rt._emit_from_filter(node, plugin.flush(), gated=False)
        if plugin.stateful:
            rt.save_state(node)
    if rt._errors_pending:
        await rt._flush_errors()
    old_sinks = [n for n in rt.sinks if n.id in stopped]
    drained = await asyncio.gather(*(_drain(rt, n, made.get(n.id), deadline) for n in old_sinks))

    rt.graph = new
    rt.wire({cid: made[cid] if cid in made else _rewired(rt, old_nodes, new.components[cid])
             for cid in new.components})

    started = {n.id for n in rt.sinks if n.id in made and await _start_sink(rt, n.runner)}  # type: ignore[arg-type]
    # the gate is still closed: what the old sinks left goes before any new event
    for old_sink, leftovers in zip(old_sinks, drained, strict=True):
        if leftovers and old_sink.id in started:
            for run in leftovers:
                await rt.nodes[old_sink.id].runner.put(run)  # type: ignore[union-attr]
            log.info("sink %s: %d events not yet written go to its new config",
                     old_sink.id, sum(count_events(r) for r in leftovers))
            _forget_all(old_sink.runner)  # type: ignore[arg-type]
    for new_filter in [n for n in rt.filters if n.id in made]:
        if new_filter.id in held:
            new_filter.plugin.load_state(held[new_filter.id])  # type: ignore[union-attr]
        else:
            rt.load_state(new_filter)
        rt.start_ticks(new_filter)
    for source in [s for s in rt.sources if s.ctx.id in made]:
        try:
            await source.start()
        except Exception as e:
            source.ctx.health("start", False, f"cannot start: {e}")
            continue
        rt.start_source(source)


def _carry_counters(rt: Runtime, made: dict[str, Source | Node]) -> None:
    """A restarted component's figures go on from the old one's (a counter of the api's)."""
    for cid, m in made.items():
        old = rt.contexts.get(cid)
        if old is not None:
            ctx = m.ctx if isinstance(m, Source) else m.plugin.ctx
            ctx.counters = old.counters


def _rewired(rt: Runtime, old_nodes: dict[str, Node], comp: Component) -> Source | Node:
    """A kept component, placed as the new config says (its inputs and match may differ)."""
    if comp.kind == "source":
        return next(s for s in rt.sources if s.ctx.id == comp.id)
    before = old_nodes[comp.id]
    node = Node(comp, before.plugin)
    node.runner = before.runner
    return node


async def _stop_source(rt: Runtime, source: Source) -> None:
    task = rt.source_tasks.pop(source.ctx.id, None)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    try:
        await source.stop()
    except Exception as e:
        log.error("source %s: stop failed: %s", source.ctx.id, e)


async def _start_sink(rt: Runtime, runner: SinkRunner) -> bool:
    try:
        await runner.start()
    except Exception as e:
        # its events have nowhere to go: stop as a failed start does, draining the others
        log.error("sink %s: cannot start after the reload: %s; stopping", runner.ctx.id, e)
        rt.failures.append(f"sink {runner.ctx.id}: cannot start after a reload: {e}")
        rt.stop()
        return False
    return True


def _same_dir(a: Any, b: Any) -> bool:
    return (a.type == b.type == "file" and a.path is not None and b.path is not None
            and Path(a.path).resolve() == Path(b.path).resolve())


async def _drain(rt: Runtime, node: Node, successor: Source | Node | None, deadline: float) -> list[list[Item]]:
    """Write out what the old sink holds until `deadline`; what is left, as runs to hand to
    the new sink of the same id (a file buffer in the same directory: the new one reads it
    back from disk itself)."""
    runner: SinkRunner = node.runner  # type: ignore[assignment]
    new_runner = getattr(successor, "runner", None)
    if new_runner is None:
        left = "kept in the file buffer for a run that uses it" if runner.conf.buffer.type == "file" \
            else "lost: the sink was removed"
    elif _same_dir(runner.conf.buffer, new_runner.conf.buffer):
        left = "left in the file buffer for its new config"
    else:
        left = "handed to its new config"
    if await runner.drain(deadline, left=left):
        return []
    if new_runner is None:
        if runner.conf.buffer.type != "file":
            rt.failures.append(f"sink {node.id}: removed by a reload with {runner.buffer.pending_events} "
                               "events not written")
        return []
    if _same_dir(runner.conf.buffer, new_runner.conf.buffer):
        return []
    return _runs(runner.unwritten())


def _runs(items: list[Item]) -> list[list[Item]]:
    """`items` cut where they change between events and Packed runs (a put takes one kind)."""
    runs: list[list[Item]] = []
    for item in items:
        packed = type(item) is Packed
        if not runs or (type(runs[-1][0]) is Packed) != packed:
            runs.append([])
        runs[-1].append(item)
    return runs


def _forget_all(runner: SinkRunner) -> None:
    """The old buffer's chunks are in the new one now: drop them (a file buffer's files)."""
    for chunk in list(runner.buffer.sealed):
        runner.buffer.commit(chunk)
