"""The file buffer: fsynced chunks, recovery in order, torn chunks, the lock."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from pipeline.buffer import file as file_buffer
from pipeline.buffer.file import BufferLocked, FileBuffer, read_chunk
from pipeline.codecs import forward_protocol as fp
from pipeline.engine.context import Context
from pipeline.event import Packed


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
        assert [read_chunk(p)[1] for p in on_disk] == [10, 5]
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


def test_torn_last_write_keeps_the_writes_before(tmp_path):
    async def main():
        b = make(tmp_path)
        await b.open()
        await b.put(batch(4))
        await b.put(batch(1, start=4))
        b.close()
    asyncio.run(main())
    [path] = tmp_path.glob("*.chunk")
    path.write_bytes(path.read_bytes()[:-3])  # a crash in the middle of a write: never acked
    errors: list = []

    async def reopen():
        b = make(tmp_path, errors)
        await b.open()
        chunk = await b.get()
        b.close()
        return [e[2]["i"] for e in chunk.events]
    assert asyncio.run(reopen()) == [0, 1, 2, 3]
    assert errors and "cut off by a crash" in errors[0][2]["error"] and errors[0][2]["kind"] == "torn_chunk"


def test_a_damaged_write_in_the_middle_is_skipped_and_the_later_ones_kept(tmp_path):
    async def main():
        b = make(tmp_path, events=100)
        await b.open()
        for start in (0, 10, 20):
            await b.put(batch(10, start=start))
        b.close()
    asyncio.run(main())
    [path] = tmp_path.glob("*.chunk")
    data = bytearray(path.read_bytes())
    middle = data.index(b"\xc1pb1", 1)
    data[middle + 40] ^= 0x01  # one flipped bit in the second write's records
    path.write_bytes(bytes(data))
    errors: list = []

    async def reopen():
        b = make(tmp_path, errors, events=100)
        await b.open()
        chunk = await b.get()
        b.close()
        return [e[2]["i"] for e in chunk.events]
    assert asyncio.run(reopen()) == list(range(10)) + list(range(20, 30))
    assert [e[2]["kind"] for e in errors] == ["damaged_chunk"]
    assert "skipped" in errors[0][2]["error"]


def test_a_chunk_of_the_earlier_format_is_still_read(tmp_path):
    import msgpack

    (tmp_path / "000000000007.chunk").write_bytes(
        b"".join(msgpack.packb(["t", i, {"i": i}]) for i in range(3)) + msgpack.packb(["t", 3, {"i": 3}])[:-2])

    async def reopen():
        b = make(tmp_path)
        await b.open()
        chunk = await b.get()
        await b.put(batch(1, start=9))
        b.close()
        return [e[2]["i"] for e in chunk.events]
    assert asyncio.run(reopen()) == [0, 1, 2]
    assert (tmp_path / "000000000008.chunk").exists()  # numbering goes on after the old chunks


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


def test_packed_runs_are_kept_as_they_came_and_recovered(tmp_path):
    blob = fp.pack_entries([("fw", 10**18 + i, {"i": i}) for i in range(40)])

    async def crash_after_put():
        b = make(tmp_path, events=100)
        await b.open()
        await b.put([Packed("fw", blob, 40, "10.0.0.9:1234"), Packed("fw", blob, 40)])
        await b.put(batch(3))
        b.close()
    asyncio.run(crash_after_put())

    async def recover():
        b = make(tmp_path, events=100)
        await b.open()
        chunk = await b.get(eager=True)
        b.close()
        return b, chunk
    b, chunk = asyncio.run(recover())
    assert b.ctx.counters["recovered"] == 83 and chunk.count == 83 and chunk.packed
    first, second, *events = chunk.events
    assert isinstance(first, Packed) and first.blob == blob and first.count == 40 and first.origin == "10.0.0.9:1234"
    assert isinstance(second, Packed) and [e[2]["i"] for e in events] == [0, 1, 2]


def test_concurrent_puts_share_fsync_rounds(tmp_path, monkeypatch):
    rounds: list[int] = []
    real = file_buffer._fsync_and_close

    def counted(fds):
        rounds.append(len(fds))
        real(fds)
    monkeypatch.setattr(file_buffer, "_fsync_and_close", counted)

    async def main():
        b = make(tmp_path, events=1000)
        await b.open()
        await asyncio.gather(*(b.put(batch(10, start=i * 10)) for i in range(50)))
        on_disk = sum(read_chunk(p)[1] for p in tmp_path.glob("*.chunk"))
        b.close()
        return on_disk
    assert asyncio.run(main()) == 500  # every put returned after its events were synced
    assert 1 <= len(rounds) < 50
