"""What a source may hand on: records every sink can write (docs/records.md).

One rule, applied where records are decoded (pipeline/codecs/formats.py, forward_protocol.py),
so what is acked is what every sink and buffer can encode:

- strings are valid UTF-8: invalid bytes (and lone surrogates) become U+FFFD;
- map keys are strings: bytes are decoded as UTF-8 (U+FFFD for invalid bytes), other keys
  are written as compact JSON (`1`, `true`, `null`, `[1,2]`, `{"a":1}`);
- integers msgpack cannot hold (>= 2**64 or < -2**63) become their decimal string: the
  digits stay exact, and no msgpack sink or file buffer could hold the number;
- a record nested deeper than MAX_DEPTH maps and lists is refused;
- a time outside what an EventTime holds (1970 to 2106) is refused.

The check costs one C call per batch (ormsgpack refuses all of the above but the depth past
MAX_DEPTH); records are walked in Python only when it fails.
"""

from __future__ import annotations

import json
import re
from typing import Any

import ormsgpack

#: maps and lists within each other, the record counting as one: the deepest orjson and
#: ormsgpack write (and so a JSON file, a forward sink), in a batch (a list) of records
MAX_DEPTH = 254
INT_MIN, INT_MAX = -(2 ** 63), 2 ** 64 - 1
#: times are ns since the epoch, below 2**32 s: what an EventTime carries
TIME_LIMIT_NS = 2 ** 32 * 1_000_000_000

_SURROGATE = re.compile("[\ud800-\udfff]")


class Refused(ValueError):
    """A record the rule refuses: it goes to `_errors`, not on."""


def text(s: str) -> str:
    """`s` as valid UTF-8 text: lone surrogates (invalid bytes decoded with
    surrogateescape, or `\\ud800` escapes in JSON) become U+FFFD."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", s)
    return s


def key(k: Any) -> str:
    if type(k) is str:
        return text(k)
    if isinstance(k, (bytes, bytearray)):
        return bytes(k).decode("utf-8", "replace")
    try:
        return text(json.dumps(clean(k), separators=(",", ":"), ensure_ascii=False, default=repr))
    except (RecursionError, ValueError) as e:
        raise Refused(f"map key cannot be made a string: {e}") from None


def pairs(items: list[tuple[Any, Any]]) -> dict[str, Any]:
    """msgpack's object_pairs_hook: a map whose keys may be maps or lists (unhashable) is
    built with string keys instead of failing the whole stream."""
    d = {}
    for k, v in items:
        d[k if type(k) is str and k.isascii() else key(k)] = v
    return d


def clean(value: Any, depth: int = 1) -> Any:
    """`value` made to the rule, its maps and lists rebuilt (only where writable() failed);
    Refused if it cannot be."""
    t = type(value)
    if t is dict or t is list or t is tuple:
        if depth > MAX_DEPTH:
            raise Refused(f"nested deeper than {MAX_DEPTH} levels")
        if t is dict:
            return {key(k): clean(v, depth + 1) for k, v in value.items()}
        return [clean(v, depth + 1) for v in value]
    if t is str:
        return text(value)
    if t is int and not INT_MIN <= value <= INT_MAX:
        try:
            return str(value)
        except ValueError:  # past Python's 4,300 digits for int to str
            raise Refused(f"integer of {value.bit_length()} bits") from None
    return value


def writable(records: list[Any]) -> bool:
    """Whether every record meets the rule already: one C call, no copy kept."""
    try:
        ormsgpack.packb(records)
    except TypeError:
        return False
    return True


def checked(records: list[Any]) -> tuple[list[Any], list[tuple[Any, str]]]:
    """The records made to the rule, and the refused ones with why."""
    if writable(records):
        return records, []
    good, refused = [], []
    for record in records:
        try:
            good.append(clean(record))
        except Refused as e:
            refused.append((record, str(e)))
        except RecursionError:
            refused.append((record, "nested too deep"))
    return good, refused
