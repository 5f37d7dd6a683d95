"""Finding the files the globs match, run in a thread: a slow disk or a huge tree never holds
the event loop (health, signals and the reading go on while it walks).

Python's glob follows symlinked directories under `**` without end: two links back to their
parent gave 2^40 paths. Here each directory is listed at most once per pattern part, known by
its device and inode, and a walk lists at most MAX_DIRS directories. What is not a regular file
(a directory, a fifo, a socket) is skipped by its stat, never opened: opening a fifo waits for
a writer.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from .positions import FINGERPRINT_BYTES, Fingerprint, digest

T = TypeVar("T")

#: directories one walk lists at most (every pattern together): past it, the walk stops, said
MAX_DIRS = 50_000

Key = tuple[int, int]


class Hit(NamedTuple):
    path: str
    st: os.stat_result
    primary: bool


@dataclass
class Found:
    """What a walk found: files by (device, inode), the first path that matched each."""

    files: dict[Key, Hit] = field(default_factory=dict)
    #: the `path` patterns that matched no file
    unmatched: list[str] = field(default_factory=list)
    #: the walk stopped at MAX_DIRS directories
    cut: bool = False


def _parts(pattern: str) -> tuple[str, list[str]]:
    """Where a pattern starts ("/" or "") and its parts."""
    pattern = os.path.expanduser(pattern)
    return ("/" if pattern.startswith("/") else ""), [p for p in pattern.split("/") if p and p != "."]


def _compile(part: str) -> re.Pattern[str] | str | None:
    """A part as matched: None for **, a name without wildcards as it is, else a regex."""
    if part == "**":
        return None
    return re.compile(fnmatch.translate(part)) if any(c in part for c in "*?[") else part


Matchers = list["re.Pattern[str] | str | None"]


class _Walk:
    def __init__(self, found: Found, excluded: list[Matchers], max_dirs: int):
        self.found = found
        self.excluded = excluded
        self.budget = max_dirs
        #: (device, inode, pattern part index) of each directory listed for this pattern
        self.seen: set[tuple[int, int, int]] = set()

    def pattern(self, pattern: str, primary: bool) -> bool:
        """Add the files `pattern` matches; True if it matched one."""
        root, parts = _parts(pattern)
        self.seen = set()
        return bool(parts) and self._walk(root, parts, [_compile(p) for p in parts], 0, primary)

    def _walk(self, directory: str, parts: list[str], matchers: Matchers, i: int, primary: bool) -> bool:
        """Match parts[i:] under `directory` ("" the working directory)."""
        matcher = matchers[i]
        last = i == len(parts) - 1
        if isinstance(matcher, str):  # a plain name: looked at, not listed for
            path = _join(directory, matcher)
            return self._file(path, primary) if last else self._walk(path, parts, matchers, i + 1, primary)
        entries = self._list(directory, i)
        if entries is None:
            return False
        matched = False
        if matcher is None:  # **: the rest matched here and in every directory below
            if last:
                for name, _ in entries:
                    if not name.startswith("."):
                        matched = self._file(_join(directory, name), primary) or matched
            else:
                matched = self._walk(directory, parts, matchers, i + 1, primary)
            for name, is_dir in entries:
                if is_dir and not name.startswith("."):
                    matched = self._walk(_join(directory, name), parts, matchers, i, primary) or matched
            return matched
        hidden_ok = parts[i].startswith(".")  # as glob: * does not match a leading dot
        for name, is_dir in entries:
            if (name.startswith(".") and not hidden_ok) or not matcher.match(name):
                continue
            if last:
                matched = self._file(_join(directory, name), primary) or matched
            elif is_dir:
                matched = self._walk(_join(directory, name), parts, matchers, i + 1, primary) or matched
        return matched

    def _list(self, directory: str, i: int) -> list[tuple[str, bool]] | None:
        """The names in `directory` and whether each is a directory (through symlinks); None
        if it was listed for this part already, cannot be listed, or the budget is spent."""
        try:
            st = os.stat(directory or ".")
        except OSError:
            return None
        key = (st.st_dev, st.st_ino, i)
        if key in self.seen or not stat.S_ISDIR(st.st_mode):
            return None
        if self.budget <= 0:
            self.found.cut = True
            return None
        self.seen.add(key)
        self.budget -= 1
        out = []
        try:
            with os.scandir(directory or ".") as it:
                for entry in it:
                    try:
                        is_dir = entry.is_dir()
                    except OSError:
                        is_dir = False
                    out.append((entry.name, is_dir))
        except OSError:
            return None
        return out

    def _file(self, path: str, primary: bool) -> bool:
        if self.excluded and _excluded(path, self.excluded):
            return False
        try:
            st = os.stat(path)  # through symlinks: the file they point to
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode):  # a directory, fifo or socket the glob matched
            return False
        self.found.files.setdefault((st.st_dev, st.st_ino), Hit(path, st, primary))
        return True


def _join(directory: str, name: str) -> str:
    if not directory:
        return name
    return directory + name if directory.endswith("/") else f"{directory}/{name}"


def _matches(names: list[str], matchers: Matchers) -> bool:
    """The path parts `names` match the pattern parts `matchers` (** any number of them)."""
    if not matchers:
        return not names
    m = matchers[0]
    if m is None:
        return any(_matches(names[k:], matchers[1:]) for k in range(len(names) + 1))
    if not names or (m != names[0] if isinstance(m, str) else not m.match(names[0])):
        return False
    return _matches(names[1:], matchers[1:])


def _excluded(path: str, excluded: list[Matchers]) -> bool:
    names = _parts(path)[1]
    return any(_matches(names, m) for m in excluded)


def walk(paths: list[str], rotated: list[str], exclude: list[str], max_dirs: int = MAX_DIRS) -> Found:
    """The regular files `paths` (primary) and `rotated` match, less the paths `exclude`
    matches (matched by name: excluding walks nothing)."""
    found = Found()
    w = _Walk(found, [[_compile(p) for p in _parts(e)[1]] for e in exclude], max_dirs)
    for primary, patterns in ((True, paths), (False, rotated)):
        for pattern in patterns:
            if not w.pattern(pattern, primary) and primary:
                found.unmatched.append(pattern)
    return found


def siblings(path: str) -> dict[Key, Hit]:
    """The regular files where a rotation puts a copy of `path`, beside it: NAME.1, NAME-*
    (dateext), NAME.*; NAME.1 first."""
    directory, name = os.path.split(path)
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return {}
    names = sorted((n for n in names if n.startswith((name + ".", name + "-"))), key=lambda n: (n != name + ".1", n))
    found: dict[Key, Hit] = {}
    for n in names:
        sibling = os.path.join(directory, n)
        try:
            st = os.stat(sibling)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.setdefault((st.st_dev, st.st_ino), Hit(sibling, st, False))
    return found


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """A descriptor of the regular file at `path`: opened without waiting (a fifo swapped in
    since the walk would wait for a writer for good), refused if it is not a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return fd, st


def head(path: str) -> bytes | None:
    """The first FINGERPRINT_BYTES of a regular file (None if it cannot be read)."""
    try:
        fd, _ = open_regular(path)
    except OSError:
        return None
    try:
        return os.pread(fd, FINGERPRINT_BYTES, 0)
    except OSError:
        return None
    finally:
        os.close(fd)


class Heads(Generic[T]):
    """Fingerprints by (length, hash): which of them a file's head is takes one read of the
    file and a hash per distinct length, not a read per fingerprint (10,000 new files against
    10,000 followed ones were 10^8 reads)."""

    def __init__(self, items: Iterable[tuple[Fingerprint, T]]):
        self.by: dict[tuple[int, str], T] = {}
        for fingerprint, value in items:
            if fingerprint.length:  # an empty fingerprint knows nothing of a head
                self.by.setdefault((fingerprint.length, fingerprint.hash), value)
        self.lengths = sorted({length for length, _ in self.by})

    def __bool__(self) -> bool:
        return bool(self.by)

    def find(self, data: bytes | None) -> T | None:
        if data is None:
            return None
        for length in self.lengths:
            if length > len(data):
                break
            value = self.by.get((length, digest(data[:length])))
            if value is not None:
                return value
        return None
