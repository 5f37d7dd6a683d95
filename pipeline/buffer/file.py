"""The file buffer: accepted events survive a crash, a kill or a power loss.

Each chunk is one file of msgpack entries: `[tag, time_ns, record]` for an event,
`[tag, blob, count, origin]` for a Packed run kept as it came. put() returns only
after the entries are written and fsynced: from then on they are the buffer's. A chunk's
file is deleted only after the sink confirmed it (for forward: fluentd's ack). On start,
chunks left by an earlier run come first, oldest first. That is at-least-once delivery:
after a crash, a chunk that was sent but not yet confirmed is sent again.

fsync is a group commit run in threads: a put waits for the first round of fsyncs that
started after its write, puts that come together share a round, and the event loop
keeps receiving meanwhile. One fsync per put, in line, cost a forward source most of
its time.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

import msgpack

from ..ack import Ack
from ..event import Item, Packed
from ..forward_protocol import bin_header
from . import Buffer, Chunk

SUFFIX = ".chunk"


class BufferLocked(RuntimeError):
    pass


class FileChunk(Chunk):
    path: Path
    fd: int | None


def read_chunk(path: Path) -> tuple[list[Item], int, int]:
    """The items of a chunk file, their number of events and the length of their whole
    entries; a torn last entry (a crash mid-write) is left out."""
    data = path.read_bytes()
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    items: list[Item] = []
    count = good = 0
    try:
        for entry in unpacker:
            if len(entry) == 4:
                tag, blob, n, origin = entry
                items.append(Packed(tag, blob, n, origin))
                count += n
            else:
                tag, t, record = entry
                items.append((tag, t, record))
                count += 1
            good = unpacker.tell()
    except (ValueError, TypeError, msgpack.UnpackException):
        pass
    return items, count, good


def _entries(items: list[Item]) -> list[bytes]:
    """The chunk file entries of `items`, as buffers to write in turn: a Packed run's blob is
    written from where it is, not copied into a packer's buffer first."""
    if len(items) == 1 and type(items[0]) is Packed:
        p = items[0]
        return [b"\x94" + msgpack.packb(p.tag) + bin_header(len(p.blob)), p.blob,
                msgpack.packb(p.count) + msgpack.packb(p.origin)]
    packer = msgpack.Packer(autoreset=False)
    for item in items:
        packer.pack((item.tag, item.blob, item.count, item.origin) if type(item) is Packed else item)
    return [packer.bytes()]


def _write_all(fd: int, parts: list[bytes]) -> int:
    """Write every byte of `parts` (a short write is continued, not taken for done)."""
    total = sum(len(p) for p in parts)
    written = os.writev(fd, parts)
    while written < total:  # rare: a signal, or a disk filling up (the next write raises)
        rest = b"".join(parts)[written:]
        written += os.write(fd, rest)
    return total


def _fsync_and_close(fds: list[int]) -> None:
    try:
        for fd in fds:
            os.fsync(fd)
    finally:
        for fd in fds:
            os.close(fd)


class FileBuffer(Buffer):
    def __init__(self, ctx, conf, *, chunk_max_events: int, chunk_max_bytes: int):
        super().__init__(ctx, conf, chunk_max_events=chunk_max_events, chunk_max_bytes=chunk_max_bytes)
        if not conf.path:
            raise ValueError("a file buffer needs buffer.path")
        self.dir = Path(conf.path)
        self.seq = 0
        self._lock: int | None = None
        # group commit: open chunk files written since the last round, sealed ones
        # written and not yet synced (the round closes those), and the round on the disk
        self._dirty: set[int] = set()
        self._unsynced: list[int] = []
        self._written = self._synced = 0
        self._next_round: asyncio.Future[None] | None = None
        self._last_round: asyncio.Future[None] | None = None

    async def open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            raise BufferLocked(f"buffer {self.dir} is in use by another pipeline (pid {holder or '?'})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock = fd
        recovered = 0
        for path in sorted(self.dir.glob("*" + SUFFIX)):
            self.seq = max(self.seq, int(path.stem) + 1) if path.stem.isdigit() else self.seq
            items, count, good = read_chunk(path)
            size = path.stat().st_size
            if good < size:
                self.ctx.error(f"chunk {path.name} was cut off by a crash: kept its {count} whole events, "
                               f"dropped the {size - good} bytes of the torn last one", origin=str(path),
                               kind="torn_chunk")
                os.truncate(path, good)
            if not items:
                path.unlink()
                continue
            chunk = self._chunk(path, None)
            chunk.events = None  # read again when its turn comes, not all at once now
            chunk.count, chunk.nbytes, chunk.held = count, good, good
            chunk.packed = any(type(i) is Packed for i in items)
            self.nbytes += good
            self.sealed.append(chunk)
            recovered += count
        if recovered:
            self.ctx.count("recovered", recovered)
            self.ctx.log.warning("%d events left in %s by an earlier run are sent first", recovered, self.dir)

    def _chunk(self, path: Path, fd: int | None) -> FileChunk:
        chunk = FileChunk()
        chunk.path, chunk.fd = path, fd
        return chunk

    def _new_chunk(self) -> Chunk:
        path = self.dir / f"{self.seq:012d}{SUFFIX}"
        self.seq += 1
        return self._chunk(path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))

    def _store(self, chunk: Chunk, items: list[Item], nbytes: int) -> int:
        assert isinstance(chunk, FileChunk) and chunk.fd is not None
        size = _write_all(chunk.fd, _entries(items))
        self._dirty.add(chunk.fd)
        self._written += 1
        return super()._store(chunk, items, size)

    def _weight(self, packed: bool) -> int:
        return 1  # max_bytes of a file buffer is disk, and what is on disk is exact

    async def put(self, batch: list[Item], ack: Ack | None = None) -> None:
        # acknowledgements: not kept with the chunk; the caller holds `ack` until this
        # returns, and from then on the events are on disk: delivered, as far as it goes
        await super().put(batch)
        await self._durable()

    async def _durable(self) -> None:
        """Wait for an fsync round that started after every write made so far."""
        if self._synced >= self._written:
            return
        if self._next_round is None:
            self._next_round = asyncio.ensure_future(self._sync_round())
        # shielded: a put that is cancelled must not cancel the round others wait on
        await asyncio.shield(self._next_round)

    async def _sync_round(self) -> None:
        # every put until this line shares the round; later ones make the next, which may
        # be on the disk beside this one
        this, self._next_round = self._next_round, None
        earlier, self._last_round = self._last_round, this
        upto = self._written
        # the round owns its descriptors: a chunk sealed meanwhile closes only its own
        fds = [os.dup(fd) for fd in self._dirty] + self._unsynced
        self._dirty.clear()
        self._unsynced = []
        await asyncio.to_thread(_fsync_and_close, fds)
        if earlier is not None and not earlier.done():
            await asyncio.shield(earlier)  # done in order: `_synced` says all before it is synced
        self._synced = max(self._synced, upto)

    def _release(self, chunk: FileChunk) -> None:
        """Close a chunk's file, handing it to the next fsync round if it was written since."""
        if chunk.fd is None:
            return
        if chunk.fd in self._dirty:
            self._dirty.discard(chunk.fd)
            self._unsynced.append(chunk.fd)
        else:
            os.close(chunk.fd)
        chunk.fd = None

    def _sealed(self, chunk: Chunk) -> None:
        assert isinstance(chunk, FileChunk)
        self._release(chunk)
        if len(self.sealed) > 2:
            chunk.events = None  # a backlog waits on disk, not in memory

    def _load(self, chunk: Chunk) -> None:
        if chunk.events is None:
            assert isinstance(chunk, FileChunk)
            chunk.events, _, _ = read_chunk(chunk.path)

    def _forget(self, chunk: Chunk) -> None:
        super()._forget(chunk)
        assert isinstance(chunk, FileChunk)
        self._release(chunk)
        chunk.path.unlink(missing_ok=True)

    def close(self) -> None:
        chunk = self.open_chunk
        if isinstance(chunk, FileChunk):
            self._release(chunk)
            if not chunk.count:
                chunk.path.unlink(missing_ok=True)
        # what no round synced yet (a put cancelled at shutdown) is synced now
        _fsync_and_close([os.dup(fd) for fd in self._dirty] + self._unsynced)
        self._dirty.clear()
        self._unsynced = []
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
