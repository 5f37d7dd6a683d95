"""Sink discard: everything is taken and dropped, counted; Packed runs are never decoded."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import msgpack
from helpers import event_time, make_plugin

from pipeline.buffer.memory import Buffer
from pipeline.engine.sink_runner import SinkRunner
from pipeline.event import Packed


def test_drops_events_and_packed_runs_without_decoding_them():
    sink = make_plugin("sink", "discard")
    # framing that checks out, and a record no decoder would take: decoding it would be an error
    undecodable = msgpack.packb([event_time(1), {"x": msgpack.ExtType(9, b"?")}])
    buffer = Buffer(sink.ctx, SimpleNamespace(max_bytes=10**9, overflow="block"), chunk_max_events=100,
                    chunk_max_bytes=10**9)

    async def main():
        runner = SinkRunner(sink, buffer, on_give_up=lambda events, reason: None,
                            on_closed=lambda sink, reason: None)
        await runner.start()
        await buffer.put([("t", 1, {"a": 1}), ("t", 2, {"a": 2})])
        await buffer.put([Packed("t", undecodable, 1)])
        assert await runner.drain(asyncio.get_running_loop().time() + 10)
    asyncio.run(main())
    assert sink.ctx.counters["events_out"] == 3 and not sink.ctx.counters["errors"]
