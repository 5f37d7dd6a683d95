"""Sink `file`: records appended to files named by time and tag, rotated and gzipped."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..config.options import Bool, Duration, Enum, Option, Size, Str
from ..event import Batch
from ..fileio import append_whole
from ..plugin import Sink
from .stdout import FORMAT_OPTIONS, make_encoder

IDLE_CLOSE = 60.0

#: an archive keeps each event's time and tag, as fluentd's out_file writes them: a parsed
#: log line's time is not in its record any more (the parser took it out)
_FORMAT = {o.name: o for o in FORMAT_OPTIONS}
_ARCHIVE_DEFAULTS = {
    "tag_key": replace(_FORMAT["tag_key"], help="the key each record's tag is written under; default `tag`, "
                       "left out when the path holds ${tag}; \"\" writes none"),
    "time_key": replace(_FORMAT["time_key"], default="time",
                        help="the key each record's event time is written under; \"\" writes none"),
    "time_format": replace(_FORMAT["time_format"], default="iso8601"),
}
FILE_FORMAT_OPTIONS = tuple(_ARCHIVE_DEFAULTS.get(o.name, o) for o in FORMAT_OPTIONS)


@dataclass
class _Open:
    fd: int
    size: int
    opened: float
    used: float


#: `/`, NUL, control characters and lone surrogates (invalid UTF-8) in a tag
_UNSAFE = re.compile("[\x00-\x1f\x7f/\ud800-\udfff]")
#: a tag longer than this (UTF-8 bytes) is cut: a file name holds 255
MAX_TAG_BYTES = 200


def path_part(tag: str) -> str:
    """A tag as one file name part that cannot leave the directory it is put in (`..`),
    hide itself, or fail to open: `/`, NUL and control characters become `_`, and so does
    a leading `.`; a tag past MAX_TAG_BYTES is cut, and a hash of it added, so that
    different long tags keep different files."""
    part = _UNSAFE.sub("_", tag)
    if part.startswith(".") or not part:
        part = "_" + part[1:]
    if len(part.encode()) > MAX_TAG_BYTES:
        digest = hashlib.sha256(tag.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        part = part.encode()[:MAX_TAG_BYTES - 17].decode("utf-8", "ignore") + "-" + digest
    return part


class FileSink(Sink):
    """Append records to files; the path may hold strftime fields and `${tag}`.

    A tag comes from the sender (a forward client names it), so in a path it is made one
    safe file name part: `/`, NUL and control characters become `_`, as does a leading `.`
    (so `../x` is `_._x`), and a tag longer than 200 bytes is cut and given a hash of
    itself; the path's fields are filled before the tag goes in, so a `%` in a tag is kept.

    Each write is one `write(2)` of whole lines on a file opened for appending, so
    a restart, or another writer, never splits a line; a write a full disk cuts short is
    cut off the file again and retried whole. A file is rotated when it
    passes `max_size` or is older than `rotate_interval`: it is renamed to
    `PATH.YYYYmmddTHHMMSS.ffffff` and, with `compress: gzip`, gzipped in the background.
    SIGHUP closes the open files: the next write opens each path afresh, so logrotate
    may move them away (its `postrotate` sends the HUP).
    """

    options = (
        Option("path", Str(), help="file path; strftime fields (%Y%m%d) and ${tag} are filled per event "
               "(the tag made one safe file name part: no /, .., NUL or control characters)"),
        *FILE_FORMAT_OPTIONS,
        Option("utc", Bool(), False, "fill strftime fields in UTC instead of local time"),
        Option("max_size", Size(), None, "rotate a file when it would grow past this size"),
        Option("rotate_interval", Duration(min=1), None, "rotate a file when it is older than this"),
        Option("compress", Enum("none", "gzip"), "none", "gzip rotated files"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.template: str = conf.path
        self.by_time = "%" in self.template
        self.by_tag = "${tag}" in self.template
        tag_key = "tag" if conf.tag_key is None and not self.by_tag else None
        self.encoder = make_encoder(conf, tag_key)
        self.files: dict[str, _Open] = {}
        self._to_time = time.gmtime if conf.utc else time.localtime
        self._compressing: set[asyncio.Task[None]] = set()

    def _paths(self, batch: Batch) -> dict[str, Batch]:
        if not self.by_time and not self.by_tag:
            return {self.template: batch}
        groups: dict[str, Batch] = {}
        names: dict[tuple[str, int], str] = {}
        for event in batch:
            tag, t = event[0], event[1]
            key = (tag, t // 1_000_000_000)
            path = names.get(key)
            if path is None:
                path = time.strftime(self.template, self._to_time(key[1])) if self.by_time else self.template
                if self.by_tag:
                    path = path.replace("${tag}", path_part(tag))
                names[key] = path
            groups.setdefault(path, []).append(event)
        return groups

    async def write(self, batch: Batch) -> None:
        now = time.time()
        # all encoded before anything is written: a record that cannot be fails the write
        # with nothing of it written, so what the runtime writes again is not written twice
        encoded = [(path, self.encoder.encode(events)) for path, events in self._paths(batch).items()]
        for path, data in encoded:
            f = self._file(path, now, len(data))
            append_whole(f.fd, [data])
            f.size += len(data)
            self.ctx.counters["bytes_out"] += len(data)
            f.used = now
        for path, f in list(self.files.items()):
            if now - f.used > IDLE_CLOSE:
                os.close(f.fd)
                del self.files[path]

    def _file(self, path: str, now: float, incoming: int) -> _Open:
        f = self.files.get(path)
        if f is not None and self._due(f, now, incoming):
            os.close(f.fd)
            del self.files[path]
            self._rotate(path)
            f = None
        if f is None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            st = os.fstat(fd)
            # a file left by an earlier run keeps its age, so time rotation stays on schedule
            f = self.files[path] = _Open(fd, st.st_size, min(now, st.st_mtime) if st.st_size else now, now)
            if self._due(f, now, incoming):
                os.close(fd)
                del self.files[path]
                self._rotate(path)
                return self._file(path, now, incoming)
        return f

    def _due(self, f: _Open, now: float, incoming: int) -> bool:
        if not f.size:
            return False
        if self.conf.max_size and f.size + incoming > self.conf.max_size:
            return True
        return bool(self.conf.rotate_interval and now - f.opened >= self.conf.rotate_interval)

    def _rotate(self, path: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", self._to_time(time.time()))
        target = f"{path}.{stamp}.{time.time_ns() // 1000 % 1_000_000:06d}"
        os.rename(path, target)
        self.ctx.count("rotations")
        if self.conf.compress == "gzip":
            task = asyncio.get_running_loop().create_task(asyncio.to_thread(_gzip, target))
            self._compressing.add(task)
            task.add_done_callback(self._compressed)

    def _compressed(self, task: asyncio.Task[None]) -> None:
        self._compressing.discard(task)
        if task.cancelled():
            return
        e = task.exception()  # retrieved here: a failed task left alone logs a traceback
        if e is not None:
            self.ctx.health("gzip", False, f"cannot gzip a rotated file, kept as it is: {e}")
        else:
            self.ctx.health("gzip", True, "rotated files are gzipped again")

    def reopen(self) -> None:
        self._close_all()  # the next write opens each path afresh: logrotate has moved the files away

    def _close_all(self) -> None:
        for f in self.files.values():
            os.close(f.fd)
        self.files.clear()

    async def stop(self) -> None:
        self._close_all()
        if self._compressing:
            await asyncio.gather(*self._compressing, return_exceptions=True)


def _gzip(path: str) -> None:
    try:
        with open(path, "rb") as src, gzip.open(path + ".gz.tmp", "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
    except OSError:
        Path(path + ".gz.tmp").unlink(missing_ok=True)  # a full disk: not half a gzip beside the file
        raise
    os.replace(path + ".gz.tmp", path + ".gz")
    os.remove(path)


PLUGIN = FileSink
