"""The memory buffer and the sink writer: chunking, overflow policies, retry until delivered."""

from __future__ import annotations

import asyncio
import gzip
import logging
import tracemalloc
from types import SimpleNamespace

import orjson
import pytest
from helpers import FIXTURES

from pipeline.buffer.memory import MEMORY_PER_MSGPACK_BYTE, Buffer, estimate_bytes
from pipeline.engine.context import Context
from pipeline.engine.sink_runner import SinkRunner
from pipeline.plugin import Sink


def buffer(max_bytes=10**9, overflow="block", events=100, nbytes=10**9):
    conf = SimpleNamespace(type="memory", path=None, max_bytes=max_bytes, overflow=overflow)
    return Buffer(Context("b", "sink"), conf, chunk_max_events=events, chunk_max_bytes=nbytes)


def batch(n, start=0):
    return [("t", i, {"i": i}) for i in range(start, start + n)]


def test_chunks_by_events_and_bytes():
    async def main():
        b = buffer(events=10)
        await b.put(batch(25))
        assert [len(c.events) for c in b.sealed] == [10, 10] and len(b.open_chunk.events) == 5
        b.seal()
        assert [len(c.events) for c in b.sealed] == [10, 10, 5]
        per = estimate_bytes(batch(1))  # chunk sizes are msgpack bytes
        b2 = buffer(nbytes=per * 4)
        await b2.put(batch(9))
        assert [len(c.events) for c in b2.sealed] == [4, 4]
    asyncio.run(main())


def test_drop_newest_and_drop_oldest_are_counted():
    async def main():
        per = estimate_bytes(batch(1)) * MEMORY_PER_MSGPACK_BYTE  # what max_bytes counts
        newest = buffer(max_bytes=per * 10, overflow="drop_newest", events=5)
        for i in range(4):
            await newest.put(batch(5, start=i * 5))
        kept = [e[2]["i"] for c in newest.sealed for e in c.events]
        assert kept == list(range(10)) and newest.ctx.counters["dropped_overflow"] == 10

        oldest = buffer(max_bytes=per * 10, overflow="drop_oldest", events=5)
        await oldest.put(batch(5))
        held = await oldest.get()
        for i in range(1, 4):
            await oldest.put(batch(5, start=i * 5))
        kept = [e[2]["i"] for c in oldest.sealed for e in c.events]
        # the chunk a writer holds stays (it may be on its way); the oldest others go
        assert held.taken and oldest.sealed[0] is held
        assert kept == list(range(5)) + list(range(15, 20)) and oldest.ctx.counters["dropped_overflow"] == 10
    asyncio.run(main())


def test_block_waits_for_room():
    async def main():
        per = estimate_bytes(batch(1)) * MEMORY_PER_MSGPACK_BYTE
        b = buffer(max_bytes=per * 5, overflow="block", events=5)
        await b.put(batch(5))
        blocked = asyncio.create_task(b.put(batch(5, start=5)))
        await asyncio.sleep(0.05)
        assert not blocked.done() and b.ctx.counters["blocked"] == 1
        b.commit(await b.get())
        await asyncio.wait_for(blocked, 2)
        assert [e[2]["i"] for e in b.sealed[0].events] == list(range(5, 10))
    asyncio.run(main())


class FlakySink(Sink):
    """Fails its first writes, then takes everything."""

    def __init__(self, failures):
        super().__init__(Context("flaky", "sink"),
                         SimpleNamespace(flush_interval=0.01, retry_max_interval=0.05, retry_timeout=None,
                                         buffer=SimpleNamespace(type="memory")))
        self.failures = failures
        self.got: list[int] = []

    async def write(self, events):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("peer down")
        self.got += [e[2]["i"] for e in events]


@pytest.mark.parametrize("failures", [0, 3])
def test_failing_sink_gets_everything_in_order_after_recovery(failures, caplog):
    caplog.set_level(logging.INFO)  # the recovery is said at info
    async def main():
        sink = FlakySink(failures)
        runner = SinkRunner(sink, buffer(events=7), on_give_up=lambda c, r: None, on_closed=lambda s, r: None)
        await runner.start()
        for i in range(5):
            await runner.buffer.put(batch(10, start=i * 10))
        assert await runner.drain(asyncio.get_running_loop().time() + 100)
        return sink
    sink = asyncio.run(main())
    assert sink.got == list(range(50))
    assert sink.ctx.counters["retries"] == failures
    if failures:
        assert sum("write failed: peer down; retrying" in r.getMessage() for r in caplog.records) == 1
        assert any("writes succeed again" in r.getMessage() for r in caplog.records)


def test_max_bytes_of_a_memory_buffer_is_the_memory_its_events_take():
    lines = [line for line in gzip.open(FIXTURES / "docker" / "stats-replay.jsonl.gz").read().split(b"\n") if line]

    async def fill(b):
        i = 0
        while not b.ctx.counters["dropped_overflow"]:
            await b.put([("docker", i, orjson.loads(lines[i % len(lines)]))])
            i += 1

    limit = 4 * 1024 * 1024
    b = buffer(max_bytes=limit, overflow="drop_newest", events=50)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        asyncio.run(fill(b))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.5 * limit < held < 1.5 * limit, f"{held / limit:.2f}x max_bytes"


def test_a_record_reading_sink_gets_packed_runs_one_by_one_and_none_twice():
    from pipeline.codecs import forward_protocol as fp
    from pipeline.event import Packed

    class FailsOnce(FlakySink):
        def __init__(self):
            super().__init__(0)
            self.calls = 0

        async def write(self, events):
            self.calls += 1
            if self.calls == 2:
                raise ConnectionError("peer down")
            self.got.append([e[2]["i"] for e in events])

    runs = [Packed("t", fp.pack_entries(batch(3, start=i * 3)), 3) for i in range(3)]

    async def main():
        sink = FailsOnce()
        runner = SinkRunner(sink, buffer(events=100), on_give_up=lambda events, reason: None,
                            on_closed=lambda sink, reason: None)
        await runner.start()
        await runner.buffer.put(runs)
        assert await runner.drain(asyncio.get_running_loop().time() + 100)
        return sink
    sink = asyncio.run(main())
    # decoded run by run; the run that failed was written again, the one before it was not
    assert sink.got == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and sink.ctx.counters["retries"] == 1
    assert sink.ctx.counters["events_out"] == 9
