"""The forward protocol's messages turned into events: Message, Forward, PackedForward and
CompressedPackedForward (inflated before), as fluentd's in_forward reads them, and the acks
that answer them. The connection, handshake and limits are the forward source's."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgpack

from ..event import Batch, Packed, now_ns
from . import edge
from .forward_protocol import ProtocolError, as_bytes, count_entries, decode_entries, to_ns
from .quote import quoted


def is_gzipped(message: Any) -> bool:
    """A CompressedPackedForward, whose blob is to be inflated before read_message."""
    return (type(message) is list and len(message) > 2 and isinstance(message[1], (str, bytes))
            and isinstance(message[2], dict) and message[2].get("compressed") == "gzip")


def read_message(message: Any, batch: Batch, packed: list[Packed], acks: list[Any], origin: str,
                 bad_entry: Callable[[Any, str], None]) -> bool:
    """Add a message's events to `batch` (a PackedForward blob in EventTime form to `packed`,
    left encoded) and its chunk id to `acks`; whether it was a message (nil is fluentd's
    in-band no-op). An entry that is not [time, record] goes to `bad_entry`."""
    if message is None:
        return False
    if not isinstance(message, list) or len(message) < 2 or not isinstance(message[0], str):
        raise ProtocolError(f"not a forward message: {quoted(message)}")
    tag, second = edge.text(message[0]), message[1]
    now = now_ns()
    if isinstance(second, list):  # Forward
        option = message[2] if len(message) > 2 else None
        entries = second
    elif isinstance(second, (str, bytes)):  # PackedForward, maybe compressed
        option = message[2] if len(message) > 2 else None
        blob = as_bytes(second)  # inflated already
        count = count_entries(blob)
        if count is None:  # not starting with [EventTime, map]: decoded here, times made ns
            entries = decode_entries(blob)
        else:
            entries = []
            if count:
                packed.append(Packed(tag, blob, count, origin))
    else:  # Message
        option = message[3] if len(message) > 3 else None
        entries = [message[1:3]]
    for entry in entries:
        if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict):
            t = to_ns(entry[0], now)
            if t is not None:
                batch.append((tag, t, entry[1]))
                continue
        bad_entry(entry, origin)
    chunk = option.get("chunk") if isinstance(option, dict) else None
    if chunk is not None:
        acks.append(chunk)
    return True


def ack_replies(acks: list[Any], json_replies: bool) -> bytes:
    """The answers to `acks`, each chunk id as it came, even a str that is not UTF-8 (see
    unpacker()): one that failed to encode would leave the sender resending what was taken."""
    if json_replies:
        return b"".join(json.dumps({"ack": a}, ensure_ascii=False).encode("utf-8", "surrogateescape")
                        for a in acks)
    return b"".join(msgpack.packb({"ack": a}, unicode_errors="surrogateescape") for a in acks)
