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

Each write is one frame, `MAGIC, length, crc32, entries`: a write cut short by a crash
or a full disk, or a damaged block, is found by its checksum, and reading goes on at the
next frame that checks out. A write that fails (a full disk) is cut off the file again
before anything else is appended, and the put waits and retries until there is room: a
source is held back (and nothing acked) instead of losing what comes after.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import zlib
from pathlib import Path

import msgpack

from ..codecs.forward_protocol import bin_header
from ..engine.ack import Ack
from ..event import Item, Packed
from ..fileio import TornWrite, append_whole
from .memory import Buffer, Chunk

SUFFIX = ".chunk"
#: 0xc1 never starts a msgpack value: a chunk of an earlier version (bare entries) starts
#: with an array header, so it is still read, the old way
MAGIC = b"\xc1pb1"
FRAME = struct.Struct("!4sII")  # magic, length of the entries, their crc32
#: the longest wait between two tries of a put on a full disk: space that comes back is
#: used within this
RETRY_MAX = 1.0


class BufferLocked(RuntimeError):
    pass


class FileChunk(Chunk):
    path: Path
    fd: int | None


def read_chunk(path: Path) -> tuple[list[Item], int, int, int]:
    """The items of a chunk file, their number of events, where its last whole frame ends
    (a torn write after it is left out) and how many bytes before that were unreadable
    and skipped."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        items, count, end = _decode(data)
        return items, count, end, 0
    items, count, end, skipped = [], 0, 0, 0
    pos = 0
    while pos < len(data):
        frame = _frame(data, pos)
        if frame is not None:
            got, n, _ = _decode(frame)
            items += got
            count += n
            pos = end = pos + FRAME.size + len(frame)
            continue
        found = data.find(MAGIC, pos + 1)
        while found != -1 and _frame(data, found) is None:
            found = data.find(MAGIC, found + 1)
        if found == -1:
            break  # a torn last write
        skipped += found - pos
        pos = found
    return items, count, end, skipped


def _frame(data: bytes, pos: int) -> memoryview | None:
    """The entries of the frame at `pos`, if it is whole and its checksum holds."""
    if len(data) - pos < FRAME.size:
        return None
    magic, length, crc = FRAME.unpack_from(data, pos)
    start = pos + FRAME.size
    payload = memoryview(data)[start:start + length]
    if magic != MAGIC or len(payload) < length or zlib.crc32(payload) != crc:
        return None
    return payload


def _decode(data: bytes | memoryview) -> tuple[list[Item], int, int]:
    """Entries one after the other: the items, their events, and the length of the whole ones."""
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


def _framed(parts: list[bytes]) -> list[bytes]:
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return [FRAME.pack(MAGIC, sum(len(p) for p in parts), crc), *parts]


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
        #: writes that failed in a row (a full disk)
        self._failures = 0

    async def open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            raise BufferLocked(f"buffer {self.dir} is in use by another pipeline (pid {holder or '?'})") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:  # a full disk: the pid is only there to name the holder
            pass
        self._lock = fd
        recovered = 0
        for path in sorted(self.dir.glob("*" + SUFFIX)):
            self.seq = max(self.seq, int(path.stem) + 1) if path.stem.isdigit() else self.seq
            items, count, good, skipped = read_chunk(path)
            size = path.stat().st_size
            if skipped:
                self.ctx.error(f"chunk {path.name} is damaged: skipped {skipped} unreadable bytes, kept "
                               f"the {count} events around them", origin=str(path), kind="damaged_chunk")
            if good < size:
                self.ctx.error(f"chunk {path.name} was cut off by a crash: kept its {count} whole events, "
                               f"dropped the {size - good} bytes of the torn last write", origin=str(path),
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
        try:
            size = append_whole(chunk.fd, _framed(_entries(items)))
        except TornWrite:
            self._seal_torn(chunk)
            raise
        self._dirty.add(chunk.fd)
        self._written += 1
        if self._failures:
            self._failures = 0
            self.ctx.health("disk", True, f"buffer {self.dir}: writes succeed again")
        return super()._store(chunk, items, size)

    def _seal_torn(self, chunk: FileChunk) -> None:
        """Nothing more goes after a torn piece: the chunk is sealed as it is (reading it
        back leaves the piece out)."""
        if chunk.count:
            self.seal()
            return
        self.open_chunk = None
        self._release(chunk)
        chunk.path.unlink(missing_ok=True)

    async def _store_failed(self, error: OSError) -> None:
        self._failures += 1
        if self._failures == 1:
            self.ctx.count("write_failures")
        self.ctx.health("disk", False, f"buffer {self.dir}: cannot write: {error.strerror or error}; "
                        "sources wait (nothing more is acked) until it can, retrying")
        await asyncio.sleep(min(RETRY_MAX, 0.05 * 2 ** min(self._failures, 10)))

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
            chunk.events = read_chunk(chunk.path)[0]

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
