"""A sink's runner: the writers that take chunks from its buffer, retry with backoff, give
chunks up after `retry_timeout`, and drain at shutdown.

What failed is decided here, once for every sink: a failure of the destination (OSError,
a timeout, a refused connection) is retried with backoff, as the destination may come
back; a failure of the data (DATA_FAILURES: the sink cannot encode or name a record) would
fail every retry, so the batch is split until the records that cause it are found: those
go to `_errors` as a description that any sink can write, and are never retried; the
rest is written. Anything else (a bug) is logged once, the chunk kept and retried."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from ..buffer.memory import Buffer, Chunk
from ..codecs.quote import quoted
from ..event import Batch, Item, Packed, count_events
from ..plugin import DataError, OutputClosed, RetryLater, Sink
from .ack import Ack

log = logging.getLogger("pipeline.runtime")  # part of the runtime, in its log lines too

#: what a sink raises for records it cannot encode or name (a `${tag}` path with a NUL is
#: ValueError): the same records fail every retry, whatever the destination does
DATA_FAILURES = (DataError, TypeError, ValueError, OverflowError, RecursionError)
#: what a destination that may come back raises (ssl.SSLError and timeouts are OSErrors)
DESTINATION_FAILURES = (OSError, EOFError)


class SinkRunner:
    """A sink's buffer and writer: batching, retry with backoff and jitter, drain."""

    def __init__(self, sink: Sink, buffer: Buffer, on_give_up: Callable[[Batch, str], None],
                 on_closed: Callable[[str, str], None], on_errors: Callable[[], None] = lambda: None):
        self.sink = sink
        self.ctx = sink.ctx
        self.conf = sink.conf
        self.buffer = buffer
        self.on_give_up = on_give_up
        self.on_closed = on_closed
        #: error events were reported (quarantined records): have them routed
        self.on_errors = on_errors
        self.tasks: list[asyncio.Task[None]] = []
        self.failed_reason: str | None = None
        self.gave_up_reason: str | None = None
        #: monotonic time of the first failed write since the last one that succeeded
        self.failing_since: float | None = None
        #: the sink raised OutputClosed: nothing more is written, or even buffered
        self.closed = False

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

    async def put(self, part: list[Item], ack: Ack | None = None) -> None:
        if not self.closed:
            await self.buffer.put(part, ack)
        elif ack is not None:  # acknowledgements: never written, so never delivered
            ack.lose()

    async def _writer(self, eager: bool) -> None:
        failures = 0
        while True:
            try:
                chunk = await self.buffer.get(eager)
                await self._deliver(chunk)
            except OutputClosed as e:
                if not self.closed:
                    self.closed = True
                    self.on_closed(self.ctx.id, str(e))
                return
            except Exception as e:  # a bug: the writer must go on, and the chunk is kept
                failures += 1
                log.debug("sink %s: writer failed", self.ctx.id, exc_info=True)
                self.failed_reason = f"unexpected {type(e).__name__}: {quoted(str(e))}"
                self.ctx.health("write", False, f"{self.failed_reason}; retrying with backoff")
                await asyncio.sleep(self._backoff(failures))
                continue
            failures = 0
            self.buffer.commit(chunk)

    def _backoff(self, attempt: int) -> float:
        # full jitter: retries of many agents after one outage do not arrive in step
        delay = min(self.conf.retry_max_interval, 0.25 * 2 ** min(attempt, 30))
        return delay * random.uniform(0.5, 1.0)

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
        from ..codecs.forward_protocol import unpack_items  # only where Packed runs are: not at start-up

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
                from ..codecs.forward_protocol import unpack_items

                rest = [item for part in parts[chunk.written:] for item in part]
                given_up = unpack_items(rest, self.ctx)
                self.ctx.count("given_up", len(given_up))
                self.gave_up_reason = reason
                self.on_give_up(given_up, reason)
                return
            chunk.written += 1

    async def _write(self, batch: list[Item], count: int, started: float) -> str | None:
        """Write `batch`, retrying with backoff; None once written (its poison records sent
        to `_errors`), or why it was given up (`retry_timeout` after `started`)."""
        attempt = 0
        while True:
            begun = time.perf_counter()
            try:
                await self.sink.write(batch)  # type: ignore[arg-type]  # Packed only if takes_packed
            except (asyncio.CancelledError, OutputClosed):
                raise
            except Exception as e:  # a destination failure, or a bug: retried, never fatal
                # ssl's certificate failure is a ValueError too: the destination's all the same
                if isinstance(e, DATA_FAILURES) and not isinstance(e, DESTINATION_FAILURES):
                    return await self._isolate(batch, e, started)
                attempt += 1
                self.ctx.count("retries")
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                reason = f"write failed: {e}" if str(e) else f"write failed: {type(e).__name__}"
                if not isinstance(e, DESTINATION_FAILURES):
                    log.debug("sink %s: write failed", self.ctx.id, exc_info=True)
                    reason = f"write failed: unexpected {type(e).__name__}: {quoted(str(e))}"
                self.failed_reason = reason
                self.ctx.health("write", False, f"{reason}; retrying with backoff")
                timeout = self.conf.retry_timeout
                if timeout is not None and time.monotonic() - started >= timeout:
                    return f"{reason}; gave up after {timeout:g}s"
                wait = e.after if isinstance(e, RetryLater) and e.after is not None else self._backoff(attempt)
                await asyncio.sleep(min(wait, self.conf.retry_max_interval))
                continue
            self.ctx.observe("write_duration_seconds", time.perf_counter() - begun)
            self.failed_reason = None
            self.failing_since = None
            self.ctx.count("writes")
            self.ctx.count("events_out", count)
            self.ctx.health("write", True, "writes succeed again")
            return None

    async def _isolate(self, batch: list[Item], e: Exception, started: float) -> str | None:
        """A write failed on its data: quarantine the records the sink named, or the one
        record of a batch of one; else write each half apart (a poison record among n costs
        2 log2(n) writes)."""
        named = {id(item) for item in e.items or ()} if isinstance(e, DataError) else set()
        rest = [item for item in batch if id(item) not in named]
        if len(rest) < len(batch) or len(batch) == 1:
            self._quarantine([item for item in batch if id(item) in named] or batch, e)
            return await self._write(rest, self._count(rest), started) if rest and named else None
        half = len(batch) // 2
        for part in (batch[:half], batch[half:]):
            reason = await self._write(part, self._count(part), started)
            if reason is not None:
                return reason
        return None

    def _count(self, batch: list[Item]) -> int:
        return count_events(batch) if self.sink.takes_packed else len(batch)

    def _quarantine(self, items: list[Item], e: Exception) -> None:
        reason = str(e) or type(e).__name__
        if isinstance(e, RecursionError):
            reason = "nested too deep to encode"
        message = f"record cannot be written ({type(e).__name__}: {reason[:200]}): sent to _errors, not retried"
        for item in items:
            if type(item) is Packed:
                self.ctx.error(f"{item.count} events {message}", origin=item.origin, tag=item.tag,
                               n=item.count, kind="poison_record")
            else:
                tag, _, record = item  # type: ignore[misc]
                self.ctx.error(message, data=record, tag=tag, kind="poison_record")
        self.ctx.count("quarantined", count_events(items))
        self.on_errors()

    async def drain(self, deadline: float, left: str | None = None) -> bool:
        """Write what is buffered until `deadline` (monotonic); True if all was written.
        `left` says what becomes of the rest (a reload hands it on)."""
        self.buffer.seal()
        while self.buffer.pending_events and not self.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        pending = self.buffer.pending_events
        try:
            await self.sink.stop()
        except Exception as e:
            log.error("sink %s: stop failed: %s", self.ctx.id, e)
        self.buffer.close()
        if pending and not self.closed:
            durable = self.conf.buffer.type == "file"
            kept = "kept in the file buffer for the next run" if durable else "lost (memory buffer)"
            why = f" ({self.failed_reason})" if self.failed_reason else ""
            log.error("sink %s: %d events not written before shutdown_timeout%s: %s",
                      self.ctx.id, pending, why, left or kept)
            return False
        return True

    def unwritten(self) -> list[Item]:
        """What a drained buffer still holds, less the parts of a chunk already written."""
        items: list[Item] = []
        for chunk in self.buffer.sealed:
            self.buffer._load(chunk)
            items += [item for part in self._parts(chunk)[chunk.written:] for item in part]
        return items
