"""Where each followed file was delivered up to, kept across runs.

A file is known by its device, its inode and a fingerprint of its first bytes: an inode
number alone is reused by the next file created after a delete, and a file truncated
while the pipeline was stopped keeps its inode. One JSON object a line, so a damaged
line costs that one entry; written to a temporary file, fsynced and renamed over the
old one, so a kill at any moment leaves the old or the new file whole.
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


def load(path: Path) -> tuple[list[Entry] | None, list[str]]:
    """The entries of a positions file (None: there is none, a first start), and a
    complaint per damaged line."""
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
        except (ValueError, KeyError, TypeError) as e:
            problems.append(f"{path}:{number}: damaged position entry dropped ({e}): {line[:200]!r}")
    return entries, problems


def save(path: Path, entries: list[Entry]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(e.line() + "\n" for e in entries))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
