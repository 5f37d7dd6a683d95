"""Where each followed file was delivered up to, kept across runs.

A file is known by its device, its inode and a fingerprint of its first bytes: an inode
number alone is reused by the next file created after a delete, and a file truncated
while the pipeline was stopped keeps its inode. One JSON object a line, so a damaged
line costs that one entry; written to a temporary file, fsynced and renamed over the
old one, so a kill at any moment leaves the old or the new file whole. The file before it is kept
beside it (NAME.prev): a positions file found empty or wholly damaged (a disk that filled, a
hand that edited it) falls back to it, rather than reading every file again from its start.
(A file with no entries falls back too: the files the previous one names, if they are still
there unchanged, resume where they were; the others are not found again and are dropped.)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

#: bytes of a file's head its fingerprint covers (fewer while the file is shorter)
FINGERPRINT_BYTES = 1024


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


@dataclass
class Fingerprint:
    """A hash of a file's first `length` bytes. Taken while a file is short it covers what
    there was, and grows with the file up to FINGERPRINT_BYTES."""

    length: int = 0
    hash: str = digest(b"")

    @classmethod
    def of(cls, fd: int) -> Fingerprint:
        head = os.pread(fd, FINGERPRINT_BYTES, 0)
        return cls(len(head), digest(head))

    def matches(self, fd: int) -> bool:
        """The file's first `length` bytes are the ones fingerprinted (an empty
        fingerprint matches any file: nothing of it was read)."""
        if not self.length:
            return True
        head = os.pread(fd, self.length, 0)
        return len(head) == self.length and digest(head) == self.hash

    def grown(self, fd: int, size: int) -> Fingerprint:
        """The fingerprint over more of the file, once it has grown (self if complete)."""
        if self.length >= FINGERPRINT_BYTES or size <= self.length:
            return self
        return Fingerprint.of(fd)


@dataclass
class Entry:
    path: str
    dev: int
    ino: int
    fingerprint: Fingerprint
    offset: int

    def line(self) -> str:
        fields = asdict(self)
        fields["fingerprint"] = [self.fingerprint.length, self.fingerprint.hash]
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def parse(cls, line: str) -> Entry:
        d = json.loads(line)
        length, hash_ = d["fingerprint"]
        entry = cls(str(d["path"]), int(d["dev"]), int(d["ino"]), Fingerprint(int(length), str(hash_)),
                    int(d["offset"]))
        if entry.offset < 0 or not 0 <= entry.fingerprint.length <= FINGERPRINT_BYTES:
            raise ValueError("offset or fingerprint length out of range")
        return entry


def previous(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def _read(path: Path) -> tuple[list[Entry] | None, list[str]]:
    """Entries (None: no file) and a complaint per damaged line."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None, []
    entries: list[Entry] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(Entry.parse(line))
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as e:
            # Infinity, 1e400 and deep nesting are JSON json.loads takes, then int() refuses
            problems.append(f"{path}:{number}: damaged position entry dropped "
                            f"({type(e).__name__}: {str(e)[:100]}): {line[:200]!r}")
    return entries, problems


@dataclass
class Loaded:
    #: None: there is no positions file, a first start
    entries: list[Entry] | None
    #: a complaint per damaged line, dropped
    problems: list[str]
    #: the file read was whole (it may become the previous one at the next save)
    whole: bool
    #: why the previous file was read instead, if it was
    fallback: str | None = None


def load(path: Path) -> Loaded:
    """A positions file's entries, its damaged ones dropped; the previous file's where this
    one has no good entry (empty, damaged throughout, or gone between save's two renames)."""
    entries, problems = _read(path)
    if entries:
        return Loaded(entries, problems, not problems)
    before, before_problems = _read(previous(path))
    if entries is None and before is None:
        return Loaded(None, [], False)
    if before:
        said = "missing" if entries is None else "damaged throughout" if problems else "empty"
        return Loaded(before, problems + before_problems, False,
                      f"{path} is {said}: the positions before it are used ({previous(path)}), "
                      "so files are not read again from their start")
    return Loaded(entries or [], problems + before_problems, False)


def save(path: Path, entries: list[Entry], keep_previous: bool = True) -> None:
    """Write the entries whole; the file there becomes the previous one (`keep_previous`:
    it is whole; not the damaged one a start found, which must not replace the last good)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(e.line() + "\n" for e in entries))
        f.flush()
        os.fsync(f.fileno())
    if keep_previous and path.exists():
        os.replace(path, previous(path))
    os.replace(tmp, path)
