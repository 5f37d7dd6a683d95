"""Source `tail`: lines of log files, through every rotation, with positions kept on delivery."""

from __future__ import annotations

import asyncio
import codecs
import os
import time
from pathlib import Path

from ..codecs.formats import MAX_LINE_BYTES
from ..config.options import Bool, Duration, Int, Invalid, ListOf, OneOf, Option, Regex, Size, Str, Struct
from ..engine.ack import Ack, InOrder
from ..event import Batch
from ..parsers import Format, build
from ..plugin import Emit, StreamSource
from ..tail import positions
from ..tail.finding import Finding
from ..tail.follower import Follower, Track, undecodable

#: seconds between looks at files that were at their end (new lines show up this late)
#: how often the files and bytes behind shown by the api are counted again
GAUGE_INTERVAL = 1.0
POLL_INTERVAL = 0.2
#: blocks read from one file before the next file has its turn
BLOCKS_PER_TURN = 16
#: seconds between writes of the positions file while acks move it
SAVE_INTERVAL = 1.0
#: how long a stop may read when the source runs outside a runtime (tests)
SHUTDOWN_TIMEOUT = 10.0


class Codec(Str):
    name = "encoding"

    def convert(self, value, path, errors, node):
        text = super().convert(value, path, errors, node)
        try:
            return codecs.lookup(text).name
        except LookupError:
            raise Invalid(f"unknown encoding {text!r} (e.g. utf-8, latin-1, shift_jis, euc-jp)") from None


_GLOBS = OneOf(Str(), ListOf(Str()))

MULTILINE = Struct(
    Option("start", Regex(), help="a line matching this begins a record"),
    Option("timeout", Duration(min=0), 1.0, "a held record goes out after this long without a line"),
    Option("max_lines", Int(min=1), 500, "a record goes out when it has this many lines"),
    name="multiline",
)


def _globs(value: str | list[str] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


class TailSource(Finding, StreamSource):
    """Follow log files as they grow, through renames, copytruncate, deletes and
    symlink switches. A position moves only once its lines are delivered (written by every
    sink, or fsynced in its file buffer): a kill at any moment loses no line, and lines
    since the last commit may come again. See docs/tail.md.

    A file there at the very first start is read from its end (`read_from_head` reads it
    whole); a file that appears later, or while the pipeline was stopped, from its head.
    With `--once`, every file is read to its current end and the run ends once the lines
    are delivered and their positions committed.
    """

    options = (
        Option("path", _GLOBS, help="glob or list of globs of the files to follow (** for any depth)"),
        Option("exclude", _GLOBS, [], "globs of files not to follow"),
        Option("rotated", _GLOBS, [],
               "globs where rotated files are (app.log.*): a known file is found again there and "
               "read to its end; a file there is never read from its head unless it appeared unseen"),
        Option("refresh_interval", Duration(min=0.01), 5.0, "time between looks for new and rotated files"),
        Option("read_from_head", Bool(), False, "at the very first start, read the files already there whole"),
        Option("path_key", Str(), None, "add the file's path to each record under this key"),
        Option("format", Format(), "lines",
               "a parser: a name (lines, json: an object a line, nginx, syslog...) or a map of its "
               "options ({type: regex, pattern: ...}); a multiline record is one text; see docs/parsers.md"),
        Option("encoding", Codec(), "utf-8", "of the files; bytes that do not decode become U+FFFD"),
        Option("max_line_bytes", Size(), MAX_LINE_BYTES,
               "a longer line is one error record, skipped to the next newline; default 1MiB"),
        Option("multiline", MULTILINE, None, "{start: REGEX, timeout, max_lines}: lines grouped into records"),
        Option("ignore_older", Duration(min=0), None, "do not follow files last written longer ago than this"),
        Option("rotate_wait", Duration(min=0), 5.0,
               "how long a file renamed away or deleted is still read after it was seen gone"),
        Option("pos_file", Str(), None, "the positions file (default: STATE_DIR/ID.positions)"),
        Option("max_open_files", Int(min=1), 1000,
               "files kept open at most: past it the idlest are closed at their offset and opened "
               "again when a look (refresh_interval) finds them grown; new files wait their turn"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.paths = _globs(conf.path)
        self.rotated = _globs(conf.rotated)
        self.exclude = _globs(conf.exclude)
        self.parser = build(conf.format, ctx)
        if conf.pos_file:
            self.pos_path: Path | None = Path(conf.pos_file).expanduser()
        else:
            self.pos_path = ctx.state_dir / f"{ctx.id}.positions" if ctx.state_dir else None
        self.followers = []
        self.copies = {}
        self.waiting = {}
        self.due = []
        self.acks = InOrder(self._delivered)
        self._save_handle: asyncio.TimerHandle | None = None
        #: stopping: every ack from now on is saved at once (the run may end any moment)
        self.final = False
        self._first_start = False
        #: run() began: there is something to read to its end at a stop
        self._running = False
        #: the batch an emit was sending when the run was cancelled (a full buffer)
        self._unsent: tuple[Batch, Ack] | None = None
        #: the positions file found at start was whole: it may become the previous one
        self._pos_whole = True

    # ---- positions

    def _delivered(self, value: tuple[Track, int]) -> None:
        track, offset = value
        track.committed = offset
        if self.final:
            self._save()
        elif self._save_handle is None:
            self._save_handle = asyncio.get_running_loop().call_later(SAVE_INTERVAL, self._save)

    def _save(self) -> None:
        self._save_handle = None
        if self.pos_path is None:
            return
        try:
            positions.save(self.pos_path, [f.entry() for f in self.followers], self._pos_whole)
            self._pos_whole = True
        except OSError as e:
            self.ctx.health("positions", False, f"cannot write positions to {self.pos_path}: {e}")
        else:
            self.ctx.health("positions", True, "positions written again")

    # ---- reading

    async def _send(self, f: Follower, texts: list[str], problems: list[tuple[str, int, bytes]]) -> None:
        ctx = self.ctx
        for message, offset, sample in problems:
            ctx.error(message, origin=f"{f.path} offset {offset}", data=sample, kind="line_too_long")
        events: Batch = []
        if texts:
            tag = self.tag.replace("*", f.name.strip("/").replace("/", ".")) if "*" in self.tag else self.tag
            events = self.parser.parse_lines(texts, tag, f.path)
            path_key = self.conf.path_key
            if path_key:
                name = f.name
                for event in events:
                    event[2][path_key] = name
        ack = self.acks.ack((f.track, f.safe_offset()))
        try:
            await self._emit(events, ack)
        except asyncio.CancelledError:
            # stopping while a buffer was full: stop() sends it before it reads on
            self._unsent = (events, ack)
            raise
        ack.release()

    async def _read(self, f: Follower) -> bool:
        """A turn of `f`: True if anything was read."""
        if f.truncated():
            self.ctx.count("truncations")
            copy = await self._copy_of(f)
            if copy is not None:
                f.restart()
                self.followers.insert(self.followers.index(f), copy)
                await self._read(copy)
            else:  # what it held of the old content goes as it is: no copy has the rest
                await self._finish(f)
                f.restart()
        progressed = False
        before = undecodable()
        counters = self.ctx.counters
        for _ in range(BLOCKS_PER_TURN):
            texts: list[str] = []
            problems: list[tuple[str, int, bytes]] = []
            start = f.offset
            if not f.read(texts, problems):
                break
            counters["bytes_in"] += f.offset - start
            progressed = True
            if texts or problems:
                await self._send(f, texts, problems)
        if undecodable() != before:
            self.ctx.count("undecodable", undecodable() - before)
        return progressed

    async def _finish(self, f: Follower) -> None:
        texts: list[str] = []
        f.finish(texts)
        if texts:
            await self._send(f, texts, [])

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        self._running = True
        loaded = positions.load(self.pos_path) if self.pos_path else positions.Loaded(None, [], True)
        saved, self._pos_whole = loaded.entries, loaded.whole
        for problem in loaded.problems:
            self.ctx.error(problem, origin=str(self.pos_path), kind="damaged_position")
        if loaded.fallback is not None:
            self.ctx.log.warning("%s", loaded.fallback)
        self._first_start = saved is None
        await self._scan(saved, initial=True)
        self._save()  # from here on, a restart is no longer the first start
        gauges = asyncio.create_task(self._gauge_loop())
        try:
            await self._follow_all()
        finally:
            gauges.cancel()

    async def _follow_all(self) -> None:
        refresh, rotate_wait = self.conf.refresh_interval, self.conf.rotate_wait
        next_scan = time.monotonic() + refresh
        while True:
            progressed = False
            for f in list(self.followers):
                if f.fd is not None:
                    progressed = await self._read(f) or progressed
            now = time.monotonic()
            for f in list(self.followers):
                if f.fd is None:
                    continue
                if f.multiline is not None and f.multiline.due(now):
                    texts: list[str] = []
                    f.multiline.flush(texts)
                    await self._send(f, texts, [])
                if f.gone_since is not None and f.at_end and now - f.gone_since >= rotate_wait:
                    await self._finish(f)
                    f.close()
            if self.waiting or self.due:
                progressed = self._balance() > 0 or progressed
            if self.ctx.once and not progressed and not self.waiting:
                for f in self.followers:
                    if f.fd is not None:
                        await self._finish(f)
                return
            if now >= next_scan:
                await self._scan()
                next_scan = now + refresh
            if not progressed:
                await asyncio.sleep(POLL_INTERVAL)

    async def _gauge_loop(self) -> None:
        """What the api shows of the files, counted apart from the reading, which a full buffer
        holds: how many are followed, and how far behind their ends the reading is."""
        while True:
            self._gauges()
            await asyncio.sleep(GAUGE_INTERVAL)

    def _gauges(self) -> None:
        behind = files = 0
        for f in self.followers:
            if f.fd is None:
                continue
            files += 1
            try:
                behind += max(0, os.fstat(f.fd).st_size - f.offset)
            except OSError:
                pass
        self.ctx.gauges["files"] = files
        self.ctx.gauges["bytes_behind"] = behind

    async def _read_to_end(self) -> None:
        if self._unsent is not None:
            (events, ack), self._unsent = self._unsent, None
            await self._emit(events, ack)
            ack.release()
        progressed = True
        while progressed:
            progressed = False
            for f in list(self.followers):
                if f.fd is not None:
                    progressed = await self._read(f) or progressed

    async def stop(self) -> None:
        self.final = True
        if self._save_handle is not None:
            self._save_handle.cancel()
        if self._running:
            # what was written before the stop is read and shipped now, not left to a next run
            # that may find the file truncated or gone; within the time the sinks drain in
            figures = self.ctx.figures
            timeout = figures().graph.settings.shutdown_timeout if figures is not None else SHUTDOWN_TIMEOUT
            try:
                await asyncio.wait_for(self._read_to_end(), timeout)
            except TimeoutError:
                self.ctx.log.warning("stopping: not every file was read to its end within shutdown_timeout "
                                     "(%gs): the rest is read by the next run, from the positions", timeout)
        self._save()
        for f in self.followers:
            f.close()


PLUGIN = TailSource
