"""The file buffer: fsynced chunks, recovery in order, torn chunks, the lock."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from pipeline.buffer.file import BufferLocked, FileBuffer, read_chunk
from pipeline.context import Context


def make(path, errors=None, events=10):
    conf = SimpleNamespace(type="file", path=str(path), max_bytes=10**9, overflow="block")
    return FileBuffer(Context("b", "sink", on_error=errors.append if errors is not None else None), conf,
                      chunk_max_events=events, chunk_max_bytes=10**9)


def batch(n, start=0):
    return [("t", i, {"i": i}) for i in range(start, start + n)]


def test_put_is_on_disk_before_it_returns_and_commit_deletes(tmp_path):
    async def main():
        b = make(tmp_path)
        await b.open()
        await b.put(batch(15))
        on_disk = sorted(tmp_path.glob("*.chunk"))
        assert [len(read_chunk(p)[0]) for p in on_disk] == [10, 5]
        chunk = await b.get()
        assert [e[2]["i"] for e in chunk.events] == list(range(10))
        b.commit(chunk)
        assert len(list(tmp_path.glob("*.chunk"))) == 1
        b.close()
    asyncio.run(main())


def test_recovery_comes_first_in_order(tmp_path):
    async def main():
        first = make(tmp_path)
        await first.open()
        await first.put(batch(25))
        first.close()  # a crash: nothing committed
        second = make(tmp_path)
        await second.open()
        await second.put(batch(3, start=100))
        got = []
        while second.pending_events:
            chunk = await second.get(eager=True)
            got += [e[2]["i"] for e in chunk.events]
            second.commit(chunk)
        second.close()
        return got, second.ctx.counters["recovered"]
    got, recovered = asyncio.run(main())
    assert got == list(range(25)) + [100, 101, 102] and recovered == 25


def test_torn_last_entry_keeps_the_good_prefix(tmp_path):
    async def main():
        b = make(tmp_path)
        await b.open()
        await b.put(batch(5))
        b.close()
    asyncio.run(main())
    [path] = tmp_path.glob("*.chunk")
    path.write_bytes(path.read_bytes()[:-3])  # a crash in the middle of a write
    errors: list = []

    async def reopen():
        b = make(tmp_path, errors)
        await b.open()
        chunk = await b.get()
        b.close()
        return [e[2]["i"] for e in chunk.events]
    assert asyncio.run(reopen()) == [0, 1, 2, 3]
    assert errors and "cut off by a crash" in errors[0][2]["error"] and errors[0][2]["kind"] == "torn_chunk"


def test_second_pipeline_on_the_same_dir_is_refused(tmp_path):
    async def main():
        a = make(tmp_path)
        await a.open()
        with pytest.raises(BufferLocked, match="in use by another pipeline"):
            await make(tmp_path).open()
        a.close()
        b = make(tmp_path)  # free again once the first is closed
        await b.open()
        b.close()
    asyncio.run(main())
