"""The forward protocol's messages turned into events: Message, Forward, PackedForward and
CompressedPackedForward (inflated before), as fluentd's in_forward reads them, and the acks
that answer them. The connection, handshake and limits are the forward source's.

A PackedForward blob is cut into slices (EntrySlices) that go on one after another: what one
message costs in memory is then its bytes and one decoded slice, never all its events
decoded at once (5,242,880 empty events inflated from 122 KB took 14 GiB so)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import msgpack

from ..event import Batch, Packed, now_ns
from . import edge
from .forward_protocol import ProtocolError, as_bytes, incomplete, to_ns
from .quote import quoted

#: a slice holds at most this many entries (a multiple of _LOOK_EVERY)...
SLICE_EVENTS = 8192
#: ... and ends at the first entry end past this many bytes: each goes into the sinks'
#: buffers before the next, so their max_bytes holds while a large message is taken in
SLICE_BYTES = 1024 * 1024
#: entries skipped between looks at the offset (a tell() an entry would cost a tenth of the walk)
_LOOK_EVERY = 64

_FAST_ENTRY = b"\x92\xd7\x00"  # [EventTime, ...
_IS_MAP = bytes(1 if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF) else 0 for b in range(256))


class TooLarge(ProtocolError):
    """A message past a bound of the source (max_message_events): refused whole, not acked."""

    kind = "message_too_large"


def eventtime_form(blob: bytes | bytearray) -> bool:
    """Whether a PackedForward blob is in the form fluentd, Fluent Bit and our sink send (the
    first entry `[EventTime, map]`): such a blob goes on undecoded. Only the first entry is
    looked at: checking every entry's form cost as much as the walk itself; a later entry
    of another form is dealt with when records are decoded."""
    return blob[:3] == _FAST_ENTRY and len(blob) > 11 and bool(_IS_MAP[blob[11]])


class EntrySlices:
    """The slices of a PackedForward blob fed in parts (as it is inflated), found by skipping
    its entries, not decoding them: a blob of more than `max_events` entries is refused once
    that many are seen, not after inflating it all. A cut-off blob is refused."""

    def __init__(self, max_events: int, max_bytes: int):
        self.max_events = max_events
        self.unpack = msgpack.Unpacker(max_buffer_size=max(max_bytes, 1))
        self.count = self.size = 0
        #: (end, entries) of each slice cut so far
        self.cuts: list[tuple[int, int]] = []
        self._start = self._first = 0

    def feed(self, data: bytes | bytearray) -> None:
        unpack = self.unpack
        unpack.feed(data)
        self.size += len(data)
        skip = unpack.skip
        n = self.count
        try:
            while True:
                skip()
                n += 1
                if not n % _LOOK_EVERY:
                    self._look(n)
        except msgpack.OutOfData:
            pass
        except TooLarge:
            raise
        except (ValueError, msgpack.UnpackException) as e:
            raise ProtocolError(f"PackedForward entries do not decode: {e}") from None
        finally:
            self.count = n

    def _look(self, n: int) -> None:
        if n > self.max_events:
            raise TooLarge(f"more than {self.max_events} events in one message (max_message_events): refused")
        end = self.unpack.tell()
        if n - self._first >= SLICE_EVENTS or end - self._start >= SLICE_BYTES:
            self.cuts.append((end, n - self._first))
            self._start, self._first = end, n

    def slices(self) -> list[tuple[int, int, int]]:
        """(start, end, entries) of every slice, once the whole blob was fed."""
        if incomplete(self.unpack):
            raise ProtocolError(f"PackedForward blob ends inside an entry (after {self.count} whole entries)")
        if self.count > self.max_events:
            raise TooLarge(f"{self.count} events in one message, more than max_message_events "
                           f"({self.max_events}): refused")
        cuts = self.cuts + [(self.size, self.count - self._first)] if self.count > self._first else self.cuts
        out, start = [], 0
        for end, n in cuts:
            out.append((start, end, n))
            start = end
        return out


def walk(blob: bytes | bytearray, max_events: int) -> list[tuple[int, int, int]]:
    """The slices of a whole PackedForward blob (see EntrySlices)."""
    slices = EntrySlices(max_events, len(blob))
    slices.feed(blob)
    return slices.slices()


class Intake:
    """What the messages of one read give, in the order they go on: events; Packed slices in
    EventTime form (passed on undecoded); Packed slices in another form, which the source
    decodes one at a time; and the chunk ids to ack once all of it is taken."""

    __slots__ = ("batch", "packed", "loose", "acks")

    def __init__(self) -> None:
        self.batch: Batch = []
        self.packed: list[Packed] = []
        self.loose: list[Packed] = []
        self.acks: list[Any] = []

    def __bool__(self) -> bool:
        return bool(self.batch or self.packed or self.loose or self.acks)

    def packed_groups(self) -> Iterator[list[Packed]]:
        """The Packed slices in emits of at most about SLICE_EVENTS events each."""
        group: list[Packed] = []
        n = 0
        for p in self.packed:
            if group and n + p.count > SLICE_EVENTS:
                yield group
                group, n = [], 0
            group.append(p)
            n += p.count
        if group:
            yield group


def is_gzipped(message: Any) -> bool:
    """A CompressedPackedForward, whose blob is to be inflated before read_message."""
    return (type(message) is list and len(message) > 2 and isinstance(message[1], (str, bytes))
            and isinstance(message[2], dict) and message[2].get("compressed") == "gzip")


def read_message(message: Any, intake: Intake, origin: str, bad_entry: Callable[[Any, str], None],
                 max_events: int, slices: list[tuple[int, int, int]] | None = None) -> bool:
    """Add a message's events and its chunk id to `intake`; whether it was a message (nil is
    fluentd's in-band no-op). An entry that is not [time, record] goes to `bad_entry`.
    `slices`: those of an inflated blob, found while inflating it."""
    if message is None:
        return False
    if not isinstance(message, list) or len(message) < 2 or not isinstance(message[0], str):
        raise ProtocolError(f"not a forward message: {quoted(message)}")
    tag, second = edge.text(message[0]), message[1]
    entries: list[Any] = []
    if isinstance(second, list):  # Forward
        option = message[2] if len(message) > 2 else None
        entries = second
        if len(entries) > max_events:
            raise TooLarge(f"{len(entries)} events in one message, more than max_message_events "
                           f"({max_events}): refused")
    elif isinstance(second, (str, bytes, bytearray)):  # PackedForward, maybe compressed (inflated already)
        option = message[2] if len(message) > 2 else None
        blob = second if isinstance(second, bytearray) else as_bytes(second)
        to = intake.packed if eventtime_form(blob) else intake.loose
        for start, end, n in walk(blob, max_events) if slices is None else slices:
            part = blob if type(blob) is bytes and end - start == len(blob) else bytes(memoryview(blob)[start:end])
            to.append(Packed(tag, part, n, origin))
    else:  # Message
        option = message[3] if len(message) > 3 else None
        entries = [message[1:3]]
    now = now_ns()
    batch = intake.batch
    for entry in entries:
        if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict):
            t = to_ns(entry[0], now)
            if t is not None:
                batch.append((tag, t, entry[1]))
                continue
        bad_entry(entry, origin)
    chunk = option.get("chunk") if isinstance(option, dict) else None
    if chunk is not None:
        intake.acks.append(chunk)
    return True


def ack_replies(acks: list[Any], json_replies: bool) -> bytes:
    """The answers to `acks`, each chunk id as it came, even a str that is not UTF-8 (see
    unpacker()): one that failed to encode would leave the sender resending what was taken."""
    if json_replies:
        return b"".join(json.dumps({"ack": a}, ensure_ascii=False).encode("utf-8", "surrogateescape")
                        for a in acks)
    return b"".join(msgpack.packb({"ack": a}, unicode_errors="surrogateescape") for a in acks)
