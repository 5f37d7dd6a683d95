"""Source `tail`: lines of log files, through every rotation, with positions kept on delivery."""

from __future__ import annotations

import asyncio
import codecs
import glob
import logging
import os
import stat
import time
from pathlib import Path
from typing import NamedTuple

from ..codecs.formats import MAX_LINE_BYTES
from ..config.options import Bool, Duration, Int, Invalid, ListOf, OneOf, Option, Regex, Size, Str, Struct
from ..engine.ack import InOrder
from ..event import Batch
from ..parsers import Format, build
from ..plugin import Emit, StreamSource
from ..tail import positions
from ..tail.follower import Follower, Track, undecodable
from ..tail.multiline import Multiline
from ..tail.positions import Fingerprint, digest

#: seconds between looks at files that were at their end (new lines show up this late)
#: how often the files and bytes behind shown by the api are counted again
GAUGE_INTERVAL = 1.0
POLL_INTERVAL = 0.2
#: blocks read from one file before the next file has its turn
BLOCKS_PER_TURN = 16
#: seconds between writes of the positions file while acks move it
SAVE_INTERVAL = 1.0


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


class Hit(NamedTuple):
    path: str
    st: os.stat_result
    primary: bool


def _globs(value: str | list[str] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


class TailSource(StreamSource):
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
        self.followers: list[Follower] = []
        #: files whose head is that of a followed file (copytruncate's copy), and since when
        self.copies: dict[tuple[int, int], float] = {}
        self.acks = InOrder(self._delivered)
        self._save_handle: asyncio.TimerHandle | None = None
        #: stopping: every ack from now on is saved at once (the run may end any moment)
        self.final = False
        self._first_start = False
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

    # ---- finding files

    def _glob(self) -> dict[tuple[int, int], Hit]:
        excluded = {p for pattern in self.exclude for p in glob.glob(pattern, recursive=True)}
        found: dict[tuple[int, int], Hit] = {}
        for primary, patterns in ((True, self.paths), (False, self.rotated)):
            for pattern in patterns:
                matched = False
                for path in glob.glob(os.path.expanduser(pattern), recursive=True):
                    if path in excluded:
                        continue
                    try:
                        st = os.stat(path)  # through symlinks: the file they point to
                    except OSError:
                        continue
                    if not stat.S_ISREG(st.st_mode):  # a directory or fifo the glob matched
                        continue
                    matched = True
                    found.setdefault((st.st_dev, st.st_ino), Hit(path, st, primary))
                if primary and not matched:
                    # a typo in a path reads nothing, silently: said at start and then once a
                    # minute while it matches nothing (as fluentd warns), not an error: the
                    # files may come later
                    self.ctx.limited(logging.WARNING, f"no_match {pattern}",
                                     f"path {pattern!r} matches no file (yet)")
        return found

    def _open(self, hit: Hit) -> tuple[int, os.stat_result] | None:
        try:
            fd = os.open(hit.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            # retried at each refresh: it is still unknown then
            self.ctx.health(f"open {hit.path}", False, f"cannot read {hit.path}: {e.strerror}; retrying")
            return None
        self.ctx.health(f"open {hit.path}", True, f"{hit.path} can be read again")
        return fd, os.fstat(fd)

    def _follow(self, hit: Hit, opened: tuple[int, os.stat_result], offset: int, *, name: str | None = None,
                track: Track | None = None, fingerprint: Fingerprint | None = None) -> Follower:
        fd, st = opened
        conf = self.conf
        ml = conf.multiline
        multiline = Multiline(ml.start, ml.timeout, ml.max_lines) if ml else None
        f = Follower(hit.path, name or hit.path, fd, st, offset, fingerprint or Fingerprint.of(fd),
                     track or Track(offset), primary=hit.primary, encoding=conf.encoding,
                     max_line_bytes=conf.max_line_bytes, multiline=multiline)
        if not hit.primary:
            f.gone_since = time.monotonic()
        self.ctx.log.debug("following %s (inode %d) from offset %d", hit.path, f.ino, offset)
        return f

    def _head_matches(self, hit: Hit, fingerprint: Fingerprint) -> bool:
        if not fingerprint.length or hit.st.st_size < fingerprint.length:
            return False
        try:
            with open(hit.path, "rb") as f:
                return digest(f.read(fingerprint.length)) == fingerprint.hash
        except OSError:
            return False

    def _scan(self, saved: list[positions.Entry] | None = None, initial: bool = False) -> None:
        now = time.monotonic()
        found = self._glob()
        for f in list(self.followers):
            hit = found.pop((f.dev, f.ino), None)
            if f.fd is None:
                # let go: known while its file is there unchanged, forgotten once it is gone
                # and delivered (a reused inode has a new size or head)
                changed = hit is not None and hit.st.st_size != f.offset and not self._head_matches(
                    hit, f.fingerprint)
                if (hit is None or changed) and f.track.committed >= f.offset:
                    self.followers.remove(f)
                    if changed:
                        found[(f.dev, f.ino)] = hit  # type: ignore[assignment]
                continue
            if hit is not None:
                f.path, f.primary = hit.path, hit.primary
                if hit.primary:
                    f.gone_since = None
                    continue
            if f.gone_since is None:
                f.gone_since = now
                self.ctx.log.debug("%s (inode %d) renamed away or deleted: read to its end", f.path, f.ino)
        for entry in saved or ():
            self._resume(entry, found)
        for key, hit in found.items():
            self._new_file(key, hit, now, initial)
        self.copies = {k: t for k, t in self.copies.items() if k in found}

    def _resume(self, entry: positions.Entry, found: dict[tuple[int, int], Hit]) -> None:
        """Find the file of a saved position: at its inode with its head unchanged, else a
        copy of it (copytruncate while stopped) anywhere the globs look."""
        key = (entry.dev, entry.ino)
        candidates = ([key] if key in found else []) + [k for k in found if k != key]
        for k in candidates:
            hit = found[k]
            if hit.st.st_size >= entry.offset and self._head_matches(hit, entry.fingerprint) or (
                    k == key and not entry.fingerprint.length and hit.st.st_size >= entry.offset):
                opened = self._open(hit)
                if opened is None:
                    return
                del found[k]
                self.followers.append(self._follow(hit, opened, entry.offset, name=entry.path,
                                                   fingerprint=entry.fingerprint))
                return
        self.ctx.log.info("%s (inode %d) is no longer there: its position is dropped", entry.path, entry.ino)

    def _new_file(self, key: tuple[int, int], hit: Hit, now: float, initial: bool) -> None:
        conf = self.conf
        if any(f.fd is not None and self._head_matches(hit, f.fingerprint) for f in self.followers):
            # a copy of a followed file: copytruncate is about to truncate that one, whose
            # rest is then read from here (_truncated); unresolved, it is a file of its own
            first = self.copies.setdefault(key, now)
            if now - first < conf.rotate_wait:
                return
        if conf.ignore_older is not None and time.time() - hit.st.st_mtime > conf.ignore_older:
            return
        opened = self._open(hit)
        if opened is None:
            return
        # history: a rotated file unseen at the very first start, or any file then unless
        # read_from_head; a file that appeared later was written since: from its head
        old = initial and self._first_start and (not conf.read_from_head or not hit.primary)
        self.followers.append(self._follow(hit, opened, opened[1].st_size if old else 0))

    def _copy_of(self, f: Follower) -> Follower | None:
        """The copy copytruncate made of `f` before truncating it, followed from where `f`
        was delivered up to, with its acks in flight; None if there is none."""
        safe = f.safe_offset()
        for key, hit in self._glob().items():
            if key == (f.dev, f.ino) or any((g.dev, g.ino) == key for g in self.followers):
                continue
            if hit.st.st_size >= safe and self._head_matches(hit, f.fingerprint):
                opened = self._open(hit)
                if opened is not None:
                    self.copies.pop(key, None)
                    self.ctx.log.info("%s was truncated: its rest is read from its copy %s", f.path, hit.path)
                    return self._follow(hit, opened, safe, name=f.name, track=f.track,
                                        fingerprint=f.fingerprint)
        self.ctx.log.info("%s was truncated: reading it again from its head", f.path)
        return None

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
        await self._emit(events, ack)
        ack.release()

    async def _read(self, f: Follower) -> bool:
        """A turn of `f`: True if anything was read."""
        if f.truncated():
            self.ctx.count("truncations")
            copy = self._copy_of(f)
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
        loaded = positions.load(self.pos_path) if self.pos_path else positions.Loaded(None, [], True)
        saved, self._pos_whole = loaded.entries, loaded.whole
        for problem in loaded.problems:
            self.ctx.error(problem, origin=str(self.pos_path), kind="damaged_position")
        if loaded.fallback is not None:
            self.ctx.log.warning("%s", loaded.fallback)
        self._first_start = saved is None
        self._scan(saved, initial=True)
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
            if self.ctx.once and not progressed:
                for f in self.followers:
                    if f.fd is not None:
                        await self._finish(f)
                return
            if now >= next_scan:
                self._scan()
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

    async def stop(self) -> None:
        self.final = True
        if self._save_handle is not None:
            self._save_handle.cancel()
        self._save()
        for f in self.followers:
            f.close()


PLUGIN = TailSource
