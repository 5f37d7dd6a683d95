"""Running a checked graph: sources on their schedules, filters in line, sinks behind buffers.

The Runtime is put together from its parts, each in a module of its own: routing.py (moving
batches, the reload gate), lifecycle.py (start, run, stop, state), signals.py; reload.py
swaps a new graph in, schedule.py runs sources and ticks. Nothing here imports the api:
the command that runs a graph hands the api the read-only Figures (figures.py) as a service.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..buffer import make_buffer
from ..config.graph import ERRORS_INPUT, Component, Graph, topological
from ..event import Event
from ..plugin import Sink, Source
from .context import Context
from .figures import Figures
from .lifecycle import LifeCycle, Service, StartService
from .reload import Reloader
from .routing import Node, Routing
from .signals import EXIT_OUTPUT_CLOSED, Signals
from .sink_runner import SinkRunner

__all__ = ["EXIT_OUTPUT_CLOSED", "Node", "Runtime"]


class Runtime(Routing, LifeCycle, Signals):
    def __init__(self, graph: Graph, *, once: bool = False):
        self.graph = graph
        self.once = once
        #: component id -> the taps reading what it emits (pipeline/api/tap.py) and the
        #: dashboard's store (pipeline/api/series.py); empty but while a `pipeline tap` runs
        #: or a dashboard charts, so the hot path pays one truth test per batch
        self.taps: dict[str, list[Any]] = {}
        #: what runs beside the graph and reads it (the api), started by run()
        self.services: list[StartService] = []
        self.running_services: list[Service] = []
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

    def figures(self) -> Figures:
        """The read-only view of this graph that the api and the internal_metrics source get."""
        return Figures(self)
