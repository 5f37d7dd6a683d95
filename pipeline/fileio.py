"""Appending to files on a disk that may fill up: a write lands whole, or not at all."""

from __future__ import annotations

import os


class TornWrite(OSError):
    """A write failed half way and the part that reached the file could not be cut off
    again: the file ends in a torn piece, and nothing may be appended to it."""


def append_whole(fd: int, parts: list[bytes]) -> int:
    """Append every byte of `parts` to `fd` (opened with O_APPEND) and return their length,
    or raise the OSError with the file as it was. A disk that fills up mid-write makes the
    write short and the next one fail: the piece that got in is cut off again, so what is
    appended later does not follow half an entry (or half a line)."""
    total = sum(len(p) for p in parts)
    written = 0
    try:
        written = os.writev(fd, parts)
        if written < total:
            rest = memoryview(b"".join(parts))
            while written < total:
                written += os.write(fd, rest[written:])
    except OSError as e:
        if written:
            try:
                # O_APPEND: the offset is the end of our piece (another appender's lines stay)
                os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR) - written)
            except OSError:
                raise TornWrite(e.errno, f"{e.strerror}; {written} bytes of a write left in the file") from e
        raise
    return total
