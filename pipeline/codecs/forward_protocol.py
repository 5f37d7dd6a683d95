"""The fluentd forward protocol (v1), as fluentd 1.16 speaks it: shared by the forward
source and sink. See docs/forward-protocol.md.

Times go out as EventTime (msgpack ext 0: uint32 seconds, uint32 nanoseconds), never
floats (fluentd >= 1.19 drops them, yet acks) nor msgpack's Timestamp (fluentd resets).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import msgpack
import ormsgpack

from ..event import Batch, Event, Item, Packed
from . import edge

if TYPE_CHECKING:
    from ..engine.context import Context

_EVENT_TIME = struct.Struct(">II")


class ProtocolError(ValueError):
    """Input that breaks the protocol: the connection it came on is closed."""


def event_time_data(time_ns: int) -> bytes:
    """The 8 bytes of an EventTime (msgpack ext type 0)."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return _EVENT_TIME.pack(seconds & 0xFFFFFFFF, nanos)


class NsTime(int):
    """An EventTime, decoded to ns: told apart from a plain integer time (seconds)."""


def ext_hook(code: int, data: bytes) -> int:
    """EventTime to ns; any other extension is refused, as fluentd refuses it."""
    if code == 0 and len(data) == 8:
        seconds, nanos = _EVENT_TIME.unpack(data)
        return NsTime(seconds * 1_000_000_000 + nanos)
    raise ProtocolError(f"unknown msgpack extension type {code} ({len(data)} bytes)")


def unpacker(max_buffer_size: int = 0, records: bool = False) -> msgpack.Unpacker:
    """`records`: maps get string keys as they are decoded (pipeline/codecs/edge.py), so a map or a
    list as a key does not break the stream; strings are made valid by edge.checked()."""
    # strings that are not UTF-8 survive as surrogates: a PackedForward blob sent as str
    # (fluentd's out_forward sends str32) comes back byte for byte with encode(..., "surrogateescape")
    return msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", strict_map_key=False,
                            object_pairs_hook=edge.pairs if records else None,
                            ext_hook=ext_hook, max_buffer_size=max_buffer_size)


def incomplete(u: msgpack.Unpacker) -> bool:
    """Whether an exhausted unpacker holds the start of an object it could not finish.
    (tell() counts those bytes as read, so it cannot tell.)"""
    try:
        return u.read_bytes(1) != b""
    except ValueError:  # "cannot switch unpacking methods while an object is incomplete"
        return True


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    return b"\xdc" + n.to_bytes(2, "big") if n < 0x10000 else b"\xdd" + n.to_bytes(4, "big")


def pack_entries(events: Batch) -> bytes:
    """The PackedForward blob: `[time, record]` entries back to back, no outer array.

    ormsgpack (Rust) packs them 3x faster than msgpack's C packer (measured: 1.1 against
    3.7 us a 30-key record). TypeError for a record no msgpack can hold (an integer past
    64 bits): by_tag() then finds it."""
    # one EventTime per distinct time (a batch read at once shares one), and comprehensions:
    # a loop with a branch per event cost as much as packing the records
    exts = {t: ormsgpack.Ext(0, event_time_data(t)) for t in {e[1] for e in events}}
    if len(exts) == 1:
        [ext] = exts.values()
        entries = [(ext, e[2]) for e in events]
    else:
        entries = [(exts[t], record) for _, t, record in events]
    return ormsgpack.packb(entries, option=ormsgpack.OPT_NON_STR_KEYS)[len(_array_header(len(entries))):]


def _packable(events: Batch, on_bad: Callable[[Event, Exception], None]) -> Batch:
    good = []
    for event in events:
        try:
            ormsgpack.packb(event[2], option=ormsgpack.OPT_NON_STR_KEYS)
        except TypeError as e:
            on_bad(event, e)
            continue
        good.append(event)
    return good


def by_tag(batch: list[Item], on_bad: Callable[[Event, Exception], None]) -> dict[str, tuple[list[bytes], int]]:
    """Per tag: the PackedForward blobs of its events (Packed ones as they came) and their
    count. A record msgpack cannot hold (an integer past 64 bits) goes to `on_bad`: left
    in, it would fail every retry of its chunk and hold up all that follows."""
    events: dict[str, Batch] = {}
    blobs: dict[str, tuple[list[bytes], int]] = {}
    tags = {item[0] for item in batch} if {type(item) for item in batch} == {tuple} else None  # type: ignore[index]
    if tags is not None and len(tags) == 1:  # the usual chunk: events of one tag
        events[tags.pop()] = batch  # type: ignore[assignment]
    else:
        for item in batch:
            if type(item) is Packed:
                parts, n = blobs.get(item.tag, ([], 0))
                parts.append(item.blob)
                blobs[item.tag] = (parts, n + item.count)
            else:
                events.setdefault(item[0], []).append(item)  # type: ignore[index, arg-type]
    for tag, group in events.items():
        try:
            blob = pack_entries(group)
        except TypeError:
            group = _packable(group, on_bad)
            blob = pack_entries(group)
        if group:
            parts, n = blobs.get(tag, ([], 0))
            parts.append(blob)
            blobs[tag] = (parts, n + len(group))
    return blobs


def bin_header(n: int) -> bytes:
    if n < 0x100:
        return b"\xc4" + n.to_bytes(1, "big")
    return b"\xc5" + n.to_bytes(2, "big") if n < 0x10000 else b"\xc6" + n.to_bytes(4, "big")


def packed_forward(tag: str, blob: bytes, size: int, chunk: str | None, compress: bool) -> bytes:
    """`[tag, blob, option]`, the blob as bin: fluentd accepts str and bin alike, and bin needs
    no UTF-8 pretence. Put together by hand: msgpack's packer grew its buffer by copying
    the blob several times (0.3 us an event of a 30-key record, as much as the rest)."""
    option: dict[str, Any] = {"size": size, "compressed": "gzip" if compress else "text"}
    if compress:
        blob = gzip.compress(blob, compresslevel=1)
    if chunk is not None:
        option["chunk"] = chunk
    return b"".join((b"\x93", msgpack.packb(tag), bin_header(len(blob)), blob, msgpack.packb(option)))


def new_chunk_id() -> str:
    return os.urandom(16).hex()


_FAST_ENTRY = b"\x92\xd7\x00"  # [EventTime, ...
_IS_MAP = bytes(1 if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF) else 0 for b in range(256))


def count_entries(blob: bytes) -> int | None:
    """The number of entries of a PackedForward blob in the form fluentd, Fluent Bit and our
    sink send (the first entry `[EventTime, map]`), found by skipping, not decoding, them;
    None for a blob in another form, which is decoded instead. A cut-off blob is refused.

    Only the first entry's form is looked at: checking every entry's cost as much as the
    walk itself. A later entry of another form is dealt with when records are decoded."""
    if not blob:
        return 0
    if blob[:3] != _FAST_ENTRY or len(blob) <= 11 or not _IS_MAP[blob[11]]:
        return None
    unpack = msgpack.Unpacker(max_buffer_size=len(blob))
    unpack.feed(blob)
    skip = unpack.skip
    n = 0
    try:
        while True:
            skip()
            n += 1
    except msgpack.OutOfData:
        pass
    except (ValueError, msgpack.UnpackException) as e:
        raise ProtocolError(f"PackedForward entries do not decode: {e}") from None
    if incomplete(unpack):
        raise ProtocolError(f"PackedForward blob ends inside an entry (after {n} whole entries)")
    return n


def unpack_packed(packed: Packed) -> tuple[Batch, list[tuple[str, bytes]]]:
    """The events of a Packed, and why each entry left out was (with its bytes): not a
    `[time, map]`, or refused by the rule of pipeline/codecs/edge.py.

    ormsgpack decodes them 2x faster than msgpack's Unpacker (2.7 against 5.6 us a 30-key
    record); its framing was checked (count_entries), so the count is the real one. It
    refuses what the rule changes (a key that is not a string, invalid UTF-8): such a run is
    decoded entry by entry instead, so one bad entry costs only itself."""
    tag = packed.tag
    try:
        entries = ormsgpack.unpackb(_array_header(packed.count) + packed.blob, ext_hook=ext_hook)
    except ValueError:
        return _unpack_each(packed)
    try:
        batch = [(tag, int(t), record) for t, record in entries if type(t) is NsTime and type(record) is dict]
    except (TypeError, ValueError):  # an entry that is not a pair
        batch = []
    if len(batch) == len(entries):
        return batch, []
    return _unpack_each(packed)  # some entry is of another form: integer or float time, not a [time, map]


def _lenient(data: bytes) -> Any:
    """One msgpack value, strings and keys made to the rule of pipeline/codecs/edge.py as they are decoded."""
    return msgpack.unpackb(data, raw=False, unicode_errors="replace", strict_map_key=False,
                           object_pairs_hook=edge.pairs, ext_hook=ext_hook)


def _unpack_each(packed: Packed) -> tuple[Batch, list[tuple[str, bytes]]]:
    blob = packed.blob
    unpack = msgpack.Unpacker(max_buffer_size=len(blob) or 1)
    unpack.feed(blob)
    batch: Batch = []
    problems: list[tuple[str, bytes]] = []
    now = time.time_ns()
    start = 0
    while start < len(blob):
        try:
            unpack.skip()
        except (msgpack.OutOfData, ValueError, msgpack.UnpackException) as e:
            problems.append((f"{packed.count - len(batch) - len(problems)} entries do not decode: "
                             f"{e or type(e).__name__}", blob[start:]))
            break
        end = unpack.tell()
        data = blob[start:end]
        start = end
        try:
            entry = _lenient(data)
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
                problems.append(("entry is not [time, record]", data))
                continue
            t = to_ns(entry[0], now)
            if t is None:
                problems.append((f"entry's time is not a time from 1970 to 2106: {entry[0]!r}", data))
                continue
        except (ValueError, msgpack.UnpackException) as e:
            problems.append((f"entry does not decode: {e}", data))
            continue
        good, refused = edge.checked([entry[1]])
        if refused:
            problems.append((f"record refused: {refused[0][1]}", data))
            continue
        batch.append((packed.tag, t, good[0]))
    return batch, problems


def unpack_items(items: list[Item], ctx: Context) -> Batch:
    """The events of a list of events and Packed runs. Entries of a run that do not decode
    after all (its framing was checked, its contents were not) are reported and skipped."""
    batch: Batch = []
    for item in items:
        if type(item) is not Packed:
            batch.append(item)  # type: ignore[arg-type]
            continue
        events, problems = unpack_packed(item)
        batch += events
        for why, data in problems:
            ctx.error(f"tag {item.tag!r}: {why}: skipped", origin=item.origin, data=data or None,
                      tag=item.tag, kind="protocol_error")
    return batch


def decode_entries(blob: bytes) -> list[tuple[int, Any]]:
    """The `[time, record]` entries of a PackedForward blob, made to the rule of
    pipeline/codecs/edge.py as they are decoded. A blob whose last entry is cut off is refused whole
    (fluentd acks it and drops the entry; we want the sender to resend)."""
    entries = []
    unpack = msgpack.Unpacker(raw=False, unicode_errors="replace", strict_map_key=False,
                              object_pairs_hook=edge.pairs, ext_hook=ext_hook, max_buffer_size=len(blob) or 1)
    unpack.feed(blob)
    try:
        for entry in unpack:
            entries.append(entry)
    except (ProtocolError, ValueError, msgpack.UnpackException) as e:
        raise ProtocolError(f"PackedForward entries do not decode: {e}") from None
    if incomplete(unpack):
        raise ProtocolError(f"PackedForward blob ends inside an entry (after {len(entries)} whole entries)")
    return entries


#: inflate() yields after about this much work (bytes in and out), so one message does not
#: hold up the event loop: a 64 MiB one is inflated in hundreds of steps
INFLATE_STEP = 1024 * 1024
#: bytes of input given to zlib at a time, to start with (see inflate())
_FIRST_PIECE = 512
#: each zlib call's bookkeeping, in bytes of work
_CALL_COST = 256


def inflate(blob: bytes, max_bytes: int) -> Iterator[bytes]:
    """The inflated parts of a blob of gzip members (any number back to back), a step of
    work at a time (a part may be b""); ProtocolError past `max_bytes` inflated.

    Linear in the blob's size, however many members it holds: zlib copies the input left
    after a member's end (unused_data), so it is given pieces that start small and grow
    while a member goes on, never the whole rest (200,000 tiny members took 9 s so)."""
    if not blob:
        return
    view = memoryview(blob)
    end = len(view)
    parts: list[bytes] = []
    pos = total = work = 0
    piece = _FIRST_PIECE
    d = zlib.decompressobj(wbits=31)
    while pos < end or not d.eof:
        given = view[pos:pos + piece]
        room = min(INFLATE_STEP, max_bytes - total + 1)
        try:
            out = d.decompress(given, room)
        except zlib.error as e:
            raise ProtocolError(f"compressed blob is not gzip: {e}") from None
        used = len(given) - len(d.unconsumed_tail) - len(d.unused_data)
        pos += used
        total += len(out)
        if total > max_bytes:
            raise ProtocolError(f"compressed blob inflates past max_message_bytes ({max_bytes})")
        if d.eof:
            if pos < end:  # another member follows
                d = zlib.decompressobj(wbits=31)
                piece = _FIRST_PIECE
        elif pos >= end and len(out) < room:
            raise ProtocolError("compressed blob is cut off")
        elif used == len(given):
            piece = min(piece * 2, INFLATE_STEP)
        parts.append(out)
        work += len(out) + used + _CALL_COST
        if work >= INFLATE_STEP:
            yield b"".join(parts)
            parts, work = [], 0
    yield b"".join(parts)


def to_ns(t: Any, now: int) -> int | None:
    """An entry's time in ns: EventTime as it is, integer or float seconds scaled; 0 or nil
    mean "now" (as in fluentd); anything else is not a time, nor is one outside what an
    EventTime holds (1970 to 2106: a file sink could not print it)."""
    if type(t) is NsTime:
        return int(t)
    if t is None or t == 0:
        return now
    if isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < edge.TIME_LIMIT_NS / 1e9:
        return t * 1_000_000_000 if isinstance(t, int) else int(t * 1e9)
    return None


# ---- handshake (shared_key), section 6 of the protocol notes


def _hex512(*parts: bytes | str) -> str:
    h = hashlib.sha512()
    for p in parts:
        # surrogateescape: a peer's str that is not UTF-8 (see unpacker()) is hashed as sent
        h.update(p.encode("utf-8", "surrogateescape") if isinstance(p, str) else p)
    return h.hexdigest()


def shared_key_digest(salt: bytes | str, hostname: str, nonce: bytes, shared_key: str) -> str:
    return _hex512(salt, hostname, nonce, shared_key)


def password_digest(auth: bytes, username: str, password: str) -> str:
    return _hex512(auth, username, password)


def helo(nonce: bytes, auth: bytes, keepalive: bool = True) -> bytes:
    return msgpack.packb(["HELO", {"nonce": nonce, "auth": auth, "keepalive": keepalive}], use_bin_type=True)


def ping(hostname: str, salt: str, nonce: bytes, shared_key: str, auth: bytes, username: str,
         password: str) -> bytes:
    digest = shared_key_digest(salt, hostname, nonce, shared_key)
    pw = password_digest(auth, username, password) if auth else ""
    return msgpack.packb(["PING", hostname, salt, digest, username if auth else "", pw], use_bin_type=True)


def as_bytes(value: Any) -> bytes:
    """A bin, or a str that carried bytes (see unpacker())."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise ProtocolError(f"expected bytes, got {type(value).__name__}")
