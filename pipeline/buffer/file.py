"""The file buffer: accepted events survive a crash, a kill or a power loss.

Each chunk is one file of msgpack `[tag, time_ns, record]` entries. put() returns only
after the entries are written and fsynced: from then on they are the buffer's. A chunk's
file is deleted only after the sink confirmed it (for forward: fluentd's ack). On start,
chunks left by an earlier run come first, oldest first. That is at-least-once delivery:
after a crash, a chunk that was sent but not yet confirmed is sent again.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import msgpack

from ..event import Batch
from . import Buffer, Chunk

SUFFIX = ".chunk"


class BufferLocked(RuntimeError):
    pass


class FileChunk(Chunk):
    path: Path
    fd: int | None


def read_chunk(path: Path) -> tuple[Batch, int]:
    """The events of a chunk file and the length of its whole entries; a torn last entry
    (a crash mid-write) is left out."""
    data = path.read_bytes()
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    events: Batch = []
    good = 0
    try:
        for tag, t, record in unpacker:
            events.append((tag, t, record))
            good = unpacker.tell()
    except (ValueError, TypeError, msgpack.UnpackException):
        pass
    return events, good


class FileBuffer(Buffer):
    def __init__(self, ctx, conf, *, chunk_max_events: int, chunk_max_bytes: int):
        super().__init__(ctx, conf, chunk_max_events=chunk_max_events, chunk_max_bytes=chunk_max_bytes)
        if not conf.path:
            raise ValueError("a file buffer needs buffer.path")
        self.dir = Path(conf.path)
        self.seq = 0
        self._lock: int | None = None

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
            events, good = read_chunk(path)
            size = path.stat().st_size
            if good < size:
                self.ctx.error(f"chunk {path.name} was cut off by a crash: kept its {len(events)} whole events, "
                               f"dropped the {size - good} bytes of the torn last one", origin=str(path),
                               kind="torn_chunk")
                os.truncate(path, good)
            if not events:
                path.unlink()
                continue
            chunk = self._chunk(path, None)
            chunk.events = None  # read again when its turn comes, not all at once now
            chunk.count, chunk.nbytes = len(events), good
            self.nbytes += good
            self.sealed.append(chunk)
            recovered += len(events)
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

    def _store(self, chunk: Chunk, events: Batch, size: int) -> None:
        assert isinstance(chunk, FileChunk) and chunk.fd is not None
        packer = msgpack.Packer(autoreset=False)
        for event in events:
            packer.pack(event)
        data = packer.bytes()
        os.write(chunk.fd, data)
        os.fsync(chunk.fd)
        super()._store(chunk, events, len(data))

    def _sealed(self, chunk: Chunk) -> None:
        assert isinstance(chunk, FileChunk)
        if chunk.fd is not None:
            os.close(chunk.fd)
            chunk.fd = None
        if len(self.sealed) > 2:
            chunk.events = None  # a backlog waits on disk, not in memory

    def _load(self, chunk: Chunk) -> None:
        if chunk.events is None:
            assert isinstance(chunk, FileChunk)
            chunk.events, _ = read_chunk(chunk.path)

    def _forget(self, chunk: Chunk) -> None:
        super()._forget(chunk)
        assert isinstance(chunk, FileChunk)
        if chunk.fd is not None:
            os.close(chunk.fd)
            chunk.fd = None
        chunk.path.unlink(missing_ok=True)

    def close(self) -> None:
        chunk = self.open_chunk
        if isinstance(chunk, FileChunk) and chunk.fd is not None:
            os.close(chunk.fd)
            chunk.fd = None
            if not chunk.count:
                chunk.path.unlink(missing_ok=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
