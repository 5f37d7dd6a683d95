"""End-to-end acknowledgements: a source learns when the events it emitted are delivered.

A source that must not lose what it read (tail's positions, forward's `ack: delivery`)
makes an `Ack` and passes it with its batches to `emit`. The runtime takes a hold on it
for each place the events go: a file buffer's hold ends once they are written and fsynced,
a memory buffer's once the sink has written the chunk that holds them (or given it up to
the errors output, or dropped it by its overflow policy). Events a filter drops hold
nothing. When the last hold ends the ack fires. It is the idea of Benthos' ack function and
Vector's batch notifiers, built once here so that no source counts deliveries itself.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any


class Ack:
    """Fires `on_done` once every hold on it has ended. It starts with one hold, the
    source's own: the source releases it after its last emit with this ack, so that the
    events of one emit delivered before the next is made cannot fire it early."""

    __slots__ = ("_holds", "_on_done", "_future", "lost", "done")

    def __init__(self, on_done: Callable[[], None] | None = None):
        self._holds = 1
        self._on_done = on_done
        self._future: asyncio.Future[None] | None = None
        #: a sink that will never write again took it (its reader is gone): it never fires
        self.lost = False
        self.done = False

    def hold(self) -> None:
        self._holds += 1

    def release(self) -> None:
        self._holds -= 1
        if self._holds == 0 and not self.lost:
            self.done = True
            if self._on_done is not None:
                self._on_done()
            if self._future is not None and not self._future.done():
                self._future.set_result(None)

    def lose(self) -> None:
        self.lost = True

    async def wait(self) -> None:
        if self.done:
            return
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        await self._future


class InOrder:
    """Acks taken in emit order, whose values are applied in that order: a later batch
    delivered before an earlier one waits for it, so a committed position never passes
    a line that is still on its way."""

    def __init__(self, apply: Callable[[Any], None]):
        self._apply = apply
        self._queue: deque[tuple[Ack, Any]] = deque()

    def ack(self, value: Any) -> Ack:
        ack = Ack(self._advance)
        self._queue.append((ack, value))
        return ack

    def _advance(self) -> None:
        queue = self._queue
        while queue and queue[0][0].done:
            self._apply(queue.popleft()[1])

    @property
    def pending(self) -> int:
        return len(self._queue)
