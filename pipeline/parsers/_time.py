"""Event times from parsed text: strptime, ISO 8601, unix seconds/ms/ns, syslog stamps.

Parsing a time costs microseconds (strptime ~10 us), more than the rest of a line's parse; but
a log writes the same stamp for every line of a second (nginx's `10/Oct/2026:13:55:36 +0000`),
so the text of the last stamp and its result are kept and a repeat costs one string compare.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..config.options import Invalid, Type, _kind

NAMED_FORMATS = ("iso8601", "unix", "unix_ms", "unix_ns", "syslog")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_OFFSET = re.compile(r"^([+-])(\d\d):?(\d\d)$")


class TimeError(ValueError):
    pass


def zone(name: str) -> tzinfo | None:
    """`local` (None: the machine's zone, DST included), `UTC`, `+09:00`, or an IANA name."""
    if name == "local":
        return None
    if name in ("UTC", "Z"):
        return UTC
    m = _OFFSET.match(name)
    if m:
        minutes = int(m.group(2)) * 60 + int(m.group(3))
        return timezone(timedelta(minutes=-minutes if m.group(1) == "-" else minutes))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"unknown time zone {name!r} (expected local, UTC, +09:00 or a name like "
                      "Europe/Paris)") from None


class TimeZone(Type):
    name = "time zone"

    def convert(self, value, path, errors, node):
        if not isinstance(value, str):
            raise Invalid(f"expected a time zone name, got {_kind(value)}")
        zone(value)
        return value


class TimeFormat(Type):
    """A strptime format, checked by formatting a date with it and reading that back."""

    name = "time format"

    def convert(self, value, path, errors, node):
        if not isinstance(value, str):
            raise Invalid(f"expected {', '.join(NAMED_FORMATS)} or a strptime format, got {_kind(value)}")
        if value in NAMED_FORMATS:
            return value
        if "%" not in value:
            raise Invalid(f"expected {', '.join(NAMED_FORMATS)} or a strptime format with % "
                          f"directives, got {value!r}")
        sample = datetime(2026, 10, 9, 13, 55, 36, 123456, tzinfo=UTC)
        try:
            datetime.strptime(sample.strftime(value), value)
        except ValueError as e:
            raise Invalid(f"not a strptime format that reads back what it writes: {e}") from None
        return value


def to_ns(dt: datetime, tz: tzinfo | None) -> int:
    if dt.tzinfo is None:
        dt = dt.astimezone() if tz is None else dt.replace(tzinfo=tz)
    return (dt - _EPOCH) // _US * 1000


def _unix(value: Any, scale: int) -> int:
    if isinstance(value, bool):
        raise TimeError(f"expected a number, got {value!r}")
    if isinstance(value, int):
        return value * scale
    if isinstance(value, float):
        return int(value * scale)
    text = str(value)
    whole, _, frac = text.partition(".")
    try:
        # digits, not float(): a float has no room for the nanoseconds of today's seconds
        if frac and scale > 1:
            digits = len(str(scale)) - 1
            sign = -1 if whole.startswith("-") else 1
            return int(whole) * scale + sign * int(frac[:digits].ljust(digits, "0"))
        return int(whole) * scale
    except ValueError:
        raise TimeError(f"not a number: {text!r}") from None


def rfc3164_year(month: int, now: float) -> int:
    """RFC 3164 stamps have no year: this one, or the last one for a December line read in
    January (written just before the new year)."""
    today = time.localtime(now)
    return today.tm_year - 1 if month == 12 and today.tm_mon == 1 else today.tm_year


_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def _iso(text: str, tz: tzinfo | None) -> int:
    try:
        return to_ns(datetime.fromisoformat(text), tz)
    except ValueError:
        raise TimeError(f"not an ISO 8601 time: {text!r}") from None


def _rfc3164(text: str, tz: tzinfo | None, clock: Callable[[], float]) -> int:
    month = _MONTHS.get(text[:3])
    if month is None:
        raise TimeError(f"not a syslog time: {text!r}")
    year = rfc3164_year(month, clock())
    try:
        return to_ns(datetime.strptime(f"{year} {text}", "%Y %b %d %H:%M:%S"), tz)
    except ValueError:
        raise TimeError(f"not a syslog time: {text!r}") from None


def parser_of(fmt: str | None, tz_name: str = "local",
              clock: Callable[[], float] = time.time) -> Callable[[Any], int]:
    """A function from a time value to ns since the epoch (raising TimeError), with its cache."""
    tz = zone(tz_name)
    parse: Callable[[Any], int]
    if fmt == "unix":
        parse = lambda v: _unix(v, 1_000_000_000)  # noqa: E731
    elif fmt == "unix_ms":
        parse = lambda v: _unix(v, 1_000_000)  # noqa: E731
    elif fmt == "unix_ns":
        parse = lambda v: _unix(v, 1)  # noqa: E731
    elif fmt in (None, "iso8601"):
        parse = lambda v: _iso(str(v), tz)  # noqa: E731
    elif fmt == "syslog":  # RFC 3164's `Oct  9 13:55:36`, or RFC 3339 (RFC 5424, rsyslog's files)
        parse = lambda v: _iso(v, tz) if v[:1].isdigit() else _rfc3164(v, tz, clock)  # noqa: E731
    else:
        def parse(v: Any) -> int:
            try:
                return to_ns(datetime.strptime(str(v), fmt), tz)
            except ValueError:
                raise TimeError(f"{v!r} does not match the time format {fmt!r}") from None

    last: Any = None
    last_ns = 0

    def cached(value: Any) -> int:
        nonlocal last, last_ns
        if value == last:
            return last_ns
        ns = parse(value)
        last, last_ns = value, ns
        return ns

    return cached
