"""What the daemon does on a signal: TERM and INT stop it (a second one at once), HUP reopens
files and reloads the config, USR1 flushes every buffer as fluentd does."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

from ..config.graph import Graph
from ..plugin import Source

if TYPE_CHECKING:
    from .reload import Reloader
    from .routing import Node

log = logging.getLogger("pipeline.runtime")

#: the exit status when a sink's reader is gone: what a shell shows for a process SIGPIPE ended
EXIT_OUTPUT_CLOSED = 141


class Signals:
    """The runtime's signal part (pipeline/engine/runtime.py puts the parts together)."""

    graph: Graph
    once: bool
    sources: list[Source]
    nodes: dict[str, Node]
    sinks: list[Node]
    source_tasks: dict[str, asyncio.Task[None]]
    reloader: Reloader
    output_closed: bool
    _stopping: asyncio.Event

    def install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)
        loop.add_signal_handler(signal.SIGUSR1, self._on_flush_signal)

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
