"""Sink `discard`: take events and drop them (fluentd's out_null, Vector's blackhole)."""

from __future__ import annotations

from ..event import Item
from ..plugin import Sink


class DiscardSink(Sink):
    """Discard every event, counted as written: for benchmarks, and to drop a branch of the graph.

    With a file buffer it still holds what it is given until its writer takes it, so
    `forward -> discard` with `buffer: {type: file}` measures what a forward source acks.
    Packed runs from a forward source are not decoded.
    """

    takes_packed = True

    async def write(self, batch: list[Item]) -> None:  # type: ignore[override]
        pass


PLUGIN = DiscardSink
