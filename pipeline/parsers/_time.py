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
    """A strptime format (with fluentd's %N, %L, %3N...), checked by formatting a date with it
    and reading that back."""

    name = "time format"

    def convert(self, value, path, errors, node):
        if not isinstance(value, str):
            raise Invalid(f"expected {', '.join(NAMED_FORMATS)} or a strptime format, got {_kind(value)}")
        if value in NAMED_FORMATS:
            return value
        if "%" not in value:
            raise Invalid(f"expected {', '.join(NAMED_FORMATS)} or a strptime format with % "
                          f"directives, got {value!r}")
        fmt = python_format(value)
        sample = datetime(2026, 10, 9, 13, 55, 36, 123456, tzinfo=UTC)
        try:
            datetime.strptime(sample.strftime(fmt), fmt)
        except ValueError as e:
            raise Invalid(f"not a strptime format that reads back what it writes: {e}") from None
        return value


#: fluentd's (Ruby's) fractions of a second: read as any number of digits, kept to the ns
_FRACTION = re.compile(r"%(?:[369]?N|L)")
#: Ruby's and chrono's (Vector's) shorthands Python's strptime lacks; %d reads a space-padded day
_SHORTHANDS = {"%F": "%Y-%m-%d", "%T": "%H:%M:%S", "%D": "%m/%d/%y", "%R": "%H:%M", "%v": "%e-%b-%Y",
               "%e": "%d", "%:z": "%z"}
_YEAR = re.compile(r"%[YyGcx]")
_OPTIONAL_FRACTION = re.compile(r"[.,]%f")
#: a fraction Python's %f cannot take: more than 6 digits after a separator (not a compact date)
_LONG_FRACTION = re.compile(r"(?<=[.,:])\d{7,}")


def python_format(fmt: str) -> str:
    """`fmt` in Python's strptime terms: every fraction directive is `%f`."""
    for short, long in _SHORTHANDS.items():
        fmt = fmt.replace(short, long)
    return _FRACTION.sub("%f", fmt)


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


_ISO_FRACTION = re.compile(r"[.,](\d{7,})")


def _iso(text: str, tz: tzinfo | None) -> int:
    try:
        ns = to_ns(datetime.fromisoformat(text), tz)
    except ValueError:
        raise TimeError(f"not an ISO 8601 time: {text!r}") from None
    m = _ISO_FRACTION.search(text)  # fromisoformat keeps microseconds: the digits after them
    return ns + int(m.group(1)[6:9].ljust(3, "0")) if m else ns


def _strptime(fmt: str, tz: tzinfo | None, clock: Callable[[], float]) -> Callable[[Any], int]:
    """A strptime format read as fluentd reads it: fractions of any length kept to the ns
    (Python's %f takes 6 digits at most), a fraction after `.` or `,` that may be left out (Go
    drops a zero one, Apache 2.2 writes none), and a date without a year in the syslog way
    (`rfc3164_year`)."""
    py = python_format(fmt)
    has_fraction = "%f" in py
    short = _OPTIONAL_FRACTION.sub("", py) if has_fraction else None
    yearless = not _YEAR.search(py)
    if yearless:  # a leap year, so that Feb 29 reads; the real year is set after
        py, short = "%Y " + py, short and "%Y " + short

    def parse(v: Any) -> int:
        text = str(v)
        extra = 0
        m = _LONG_FRACTION.search(text) if has_fraction else None
        if m is not None:
            digits = m.group()
            text = text[:m.start()] + digits[:6] + text[m.end():]
            extra = int(digits[6:9].ljust(3, "0"))
        if yearless:
            text = "2000 " + text
        try:
            dt = datetime.strptime(text, py)
        except ValueError:
            try:
                if short is None:
                    raise
                dt = datetime.strptime(text, short)
            except ValueError:
                raise TimeError(f"{v!r} does not match the time format {fmt!r}") from None
        if yearless:
            try:
                dt = dt.replace(year=rfc3164_year(dt.month, clock()))
            except ValueError:  # Feb 29 of a year that has none
                raise TimeError(f"{v!r} is not a day of {rfc3164_year(dt.month, clock())}") from None
        return to_ns(dt, tz) + extra
    return parse


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
        rfc3164 = _strptime("%b %d %H:%M:%S.%N", tz, clock)
        parse = lambda v: _iso(v, tz) if v[:1].isdigit() else rfc3164(v)  # noqa: E731
    else:
        parse = _strptime(fmt, tz, clock)

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
