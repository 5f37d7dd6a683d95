"""The tail source's part that finds files: which files the globs match (walked in a thread),
which of them are followed, from where, and which are copies of others; within max_open_files.
pipeline/sources/tail.py puts it together with the reading."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING

from . import positions
from .discover import MAX_DIRS, Found, Heads, Hit, Key, head, open_regular, siblings, walk
from .follower import Follower, Track
from .multiline import Multiline
from .positions import Fingerprint

if TYPE_CHECKING:
    from ..engine.context import Context


class Finding:
    ctx: Context
    conf: SimpleNamespace
    paths: list[str]
    rotated: list[str]
    exclude: list[str]
    followers: list[Follower]
    #: files whose head is that of a followed file (copytruncate's copy), and since when
    copies: dict[Key, float]
    #: files found but not opened yet (max_open_files), with the offset to read from
    waiting: dict[Key, tuple[Hit, int]]
    #: parked followers whose files grew, to open again
    due: list[Follower]
    _first_start: bool

    def _glob(self) -> dict[Key, Hit]:
        """The files the globs match, now (in a thread: see _find)."""
        return self._report(walk(self.paths, self.rotated, self.exclude))

    async def _find(self) -> dict[Key, Hit]:
        # off the event loop: a huge tree or a slow disk must not hold health, signals, reading
        return self._report(await asyncio.to_thread(walk, self.paths, self.rotated, self.exclude))

    def _report(self, found: Found) -> dict[Key, Hit]:
        for pattern in found.unmatched:
            # a typo in a path reads nothing, silently: said at start and then once a minute
            # while it matches nothing (as fluentd warns), not an error: the files may come later
            self.ctx.limited(logging.WARNING, f"no_match {pattern}", f"path {pattern!r} matches no file (yet)")
        if found.cut:
            self.ctx.limited(logging.WARNING, "walk_cut",
                             f"the globs reach more than {MAX_DIRS} directories: the rest is not looked at")
        return found.files

    def _open(self, path: str) -> tuple[int, os.stat_result] | None:
        try:
            opened = open_regular(path)
        except OSError as e:
            # retried at each refresh: it is still unknown then
            self.ctx.health(f"open {path}", False, f"cannot read {path}: {e.strerror}; retrying")
            return None
        self.ctx.health(f"open {path}", True, f"{path} can be read again")
        return opened

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
        return Heads([(fingerprint, True)]).find(head(hit.path)) is not None

    async def _scan(self, saved: list[positions.Entry] | None = None, initial: bool = False) -> None:
        found = await self._find()
        now = time.monotonic()
        for f in list(self.followers):
            hit = found.pop((f.dev, f.ino), None)
            if f.parked:
                if hit is not None and hit.st.st_size == f.offset:
                    continue
                if hit is not None and f not in self.due:
                    f.path = hit.path
                    self.due.append(f)
                if hit is None:  # renamed away or deleted while closed: let go
                    f.parked = False
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
        if saved:
            self._resume(saved, found)
        self.waiting = {k: (found.pop(k), offset) for k, (_, offset) in self.waiting.items() if k in found}
        if found:
            followed = Heads((f.fingerprint, f) for f in self.followers if f.fd is not None)
            for key, hit in found.items():
                self._new_file(key, hit, now, initial, followed)
        self._balance()
        self.copies = {k: t for k, t in self.copies.items() if k in found}

    def _resume(self, saved: list[positions.Entry], found: dict[Key, Hit]) -> None:
        """Find the files of saved positions: each at its inode with its head unchanged, else
        a copy of it (copytruncate while stopped) anywhere the globs look, by its head."""
        elsewhere = []
        for entry in saved:
            key = (entry.dev, entry.ino)
            hit = found.get(key)
            if hit is not None and hit.st.st_size >= entry.offset and (
                    not entry.fingerprint.length or self._head_matches(hit, entry.fingerprint)):
                self._take(entry, key, found)
            else:
                elsewhere.append(entry)
        pending = {id(e): e for e in elsewhere}
        heads = Heads((e.fingerprint, id(e)) for e in elsewhere)
        for key, hit in list(found.items()) if heads else ():
            match = pending.get(heads.find(head(hit.path)) or 0)
            if match is not None and hit.st.st_size >= match.offset:
                del pending[id(match)]
                self._take(match, key, found)
        for entry in pending.values():
            self.ctx.log.info("%s (inode %d) is no longer there: its position is dropped", entry.path, entry.ino)

    def _take(self, entry: positions.Entry, key: Key, found: dict[Key, Hit]) -> None:
        hit = found.pop(key)
        opened = self._open(hit.path)
        if opened is not None:
            self.followers.append(self._follow(hit, opened, entry.offset, name=entry.path,
                                               fingerprint=entry.fingerprint))

    def _new_file(self, key: Key, hit: Hit, now: float, initial: bool, followed: Heads[Follower]) -> None:
        conf = self.conf
        if followed and followed.find(head(hit.path)) is not None:
            # a copy of a followed file: copytruncate is about to truncate that one, whose
            # rest is then read from here (_truncated); unresolved, it is a file of its own
            first = self.copies.setdefault(key, now)
            if now - first < conf.rotate_wait:
                return
        if conf.ignore_older is not None and time.time() - hit.st.st_mtime > conf.ignore_older:
            return
        # history: a rotated file unseen at the very first start, or any file then unless
        # read_from_head; a file that appeared later was written since: from its head
        old = initial and self._first_start and (not conf.read_from_head or not hit.primary)
        self.waiting[key] = (hit, hit.st.st_size if old else 0)

    def _balance(self) -> int:
        """Open the files waiting and the parked ones that grew, within max_open_files: the
        idlest open files (at their end longest) are parked to make room, as Fluent Bit's tail
        does; 10,000 files open at once were 8,360 descriptors and nothing shipped."""
        if not self.waiting and not self.due:
            return 0
        open_files = [f for f in self.followers if f.fd is not None]
        room = self.conf.max_open_files - len(open_files)
        wanted = len(self.waiting) + len(self.due)
        if room < wanted:
            idle = sorted((f for f in open_files if f.at_end and f.gone_since is None and f.primary
                           and not (f.multiline is not None and f.multiline.held)), key=lambda f: f.last_read)
            for f in idle[:wanted - room]:
                f.park()
                room += 1
        done = 0
        while self.due and room > 0:
            f = self.due.pop()
            opened = self._open(f.path)
            if opened is None or (opened[1].st_dev, opened[1].st_ino) != (f.dev, f.ino):
                if opened is not None:
                    os.close(opened[0])
                f.parked = False  # another file is at its path now: let go
                continue
            f.unpark(opened[0])
            room -= 1
            done += 1
        while self.waiting and room > 0:
            key = next(iter(self.waiting))
            hit, offset = self.waiting.pop(key)
            opened = self._open(hit.path)
            if opened is not None:
                self.followers.append(self._follow(hit, opened, offset))
                room -= 1
                done += 1
        return done

    async def _copy_of(self, f: Follower) -> Follower | None:
        """The copy copytruncate made of `f` before truncating it, followed from where `f`
        was delivered up to, with its acks in flight; None if there is none. Looked for
        where the globs look, then beside the file (NAME.1, NAME-*, NAME.*: a `rotated` glob
        may be missing); the log says which rule applied."""
        safe = f.safe_offset()
        followed = {(g.dev, g.ino) for g in self.followers}
        found = await self._find()
        beside = await asyncio.to_thread(siblings, f.path)
        for rule, hits in (("found by the globs", found), ("found beside it", beside)):
            for key, hit in hits.items():
                if key in followed or hit.st.st_size < safe or not self._head_matches(hit, f.fingerprint):
                    continue
                opened = self._open(hit.path)
                if opened is not None:
                    self.copies.pop(key, None)
                    self.ctx.log.info("%s was truncated: its rest is read from its copy %s (%s)",
                                      f.path, hit.path, rule)
                    return self._follow(hit, opened, safe, name=f.name, track=f.track,
                                        fingerprint=f.fingerprint)
        self.ctx.log.info("%s was truncated and no copy of it was found (by the globs, or beside it): "
                          "reading it again from its head; what it had after offset %d is lost", f.path, f.offset)
        return None
