"""Parsers: a line of text (or a field of a record) to a record and its event time.

One module per format, `pipeline/parsers/<name>.py`, naming its class in `PLUGIN` as the other
plugins do; `format:` on a source or the `parse` filter is a name (`format: nginx`) or a map
with the format's options (`format: {type: regex, pattern: ..., time_key: ts}`), both checked at
`check` from the options each parser declares. The one entry point for a source is `build`:

    parser = parsers.build(conf.format, ctx)
    batch = parser.parse_lines(lines, tag, origin)   # lines: list[str], without line breaks

A line that does not parse is handled by `on_error` (error: to `_errors` with the raw line,
its origin and the reason; keep: emitted as `{"message": line, "parse_error": reason}`; drop)
and counted (`parse_errors`) in every case.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from .. import plugin
from ..codecs.formats import LineDecoder, text_lines
from ..config.options import (
    Bool,
    Enum,
    Errors,
    Invalid,
    MapOf,
    Option,
    Str,
    Type,
    _did_you_mean,
    _kind,
    resolve,
)
from ..engine.context import Context
from ..event import Batch, Event, Record, now_ns
from ..plugin import Plugin, UnknownPlugin, load, names
from ._time import TimeError, TimeFormat, TimeZone, parser_of


class ParseError(ValueError):
    """Why one line or value does not parse (the reason in the error record)."""


def _number(conv: Callable[[str], Any], what: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if type(value) is not str:
            return value
        if value == "-" or not value:  # nginx and Apache write `-` for "no value"
            return None
        try:
            return conv(value)
        except ValueError:
            raise ParseError(f"{value!r} is not {what}") from None
    return convert


def _bool(value: Any) -> Any:
    if type(value) is not str:
        return value
    low = value.lower()
    if low in ("true", "yes", "on", "1"):
        return True
    if low in ("false", "no", "off", "0"):
        return False
    if low in ("", "-"):
        return None
    raise ParseError(f"{value!r} is not a boolean")


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int": _number(int, "an integer"), "float": _number(float, "a number"), "bool": _bool, "string": str,
}

ON_ERROR = Option("on_error", Enum("error", "keep", "drop"), "error",
                  "a line that does not parse: error (to _errors with the line), keep (emitted as "
                  "{message: line, parse_error: reason}) or drop; each counted")


def time_options(time_key: str | None = None, time_format: str | None = None,
                 types: dict[str, str] | None = None) -> tuple[Option, ...]:
    """The options of a parser that gives event times and typed values, with its defaults."""
    return (
        Option("time_key", Str(), time_key, "the field holding the event time; \"\": none, the time the line was read"),
        Option("time_format", TimeFormat(), time_format,
               "a strptime format, or iso8601, unix, unix_ms, unix_ns, syslog (RFC 3164 or 3339)"
               + ("" if time_format else "; default: iso8601")),
        Option("timezone", TimeZone(), "local",
               "zone of times written without an offset: local (the machine's), UTC, +09:00 or a name"),
        Option("keep_time_key", Bool(), False, "keep the time field in the record"),
        Option("types", MapOf(Enum(*CONVERTERS)), dict(types or {}),
               "field -> int, float, bool or string; `-` or empty is null for numbers"),
    )


class Parser(Plugin):
    """A format: `record(text)` gives the fields of one line or raises ParseError."""

    kind = "parser"
    common_options: ClassVar[tuple[Option, ...]] = (Option("type", Str(), help="format name"), ON_ERROR)

    def __init__(self, ctx: Context, conf: Any):
        super().__init__(ctx, conf)
        types = getattr(conf, "types", None) or {}
        #: typed fields: int ones apart, converted inline by int() (the most common, nginx's
        #: status and size), the others through their converter
        self.ints = tuple(k for k, v in types.items() if v == "int")
        self.typed = tuple((k, CONVERTERS[v]) for k, v in types.items() if v != "int")
        self.time_key: str = getattr(conf, "time_key", None) or ""
        self.parse_time = parser_of(conf.time_format, conf.timezone) if self.time_key else None
        self.keep_time = getattr(conf, "keep_time_key", False)

    def record(self, text: str) -> Record:
        raise NotImplementedError

    def records_of(self, lines: list[str]) -> list[Any]:
        """Each line's fields, or the ParseError it gave, in order."""
        out: list[Any] = []
        record_of = self.record
        for line in lines:
            try:
                out.append(record_of(line))
            except ParseError as e:
                out.append(e)
        return out

    def finished(self, lines: list[str], records: list[Any], tag: str, now: int | None,
                 fail: Callable[[str, str], Event | None]) -> Batch:
        """Events of `records` (from `records_of`) with their types and event times (`now` where a
        line has none); `fail(line, reason)` gives what stands for a line that did not parse
        (None: nothing). One loop for the batch, without a Python call per line: a call costs
        as much as the regex match of a line."""
        out: list[Any] = []  # events, but for parse()'s, whose `now` is None
        append = out.append
        ints, typed, time_key, keep = self.ints, self.typed, self.time_key, self.keep_time
        parse_time = self.parse_time
        last: Any = None
        last_t = now
        for line, record in zip(lines, records):
            if type(record) is not dict:
                event = fail(line, str(record))
                if event is not None:
                    append(event)
                continue
            t = now
            try:
                for key in ints:
                    value = record.get(key)
                    if type(value) is str:
                        try:
                            record[key] = int(value)
                        except ValueError:  # `-` or empty is null, others an error
                            record[key] = _typed(key, CONVERTERS["int"], value)
                for key, conv in typed:
                    value = record.get(key)
                    if value is not None:
                        record[key] = _typed(key, conv, value)
                if time_key:
                    stamp = record.get(time_key) if keep else record.pop(time_key, None)
                    if stamp is not None:  # else no time in this line: the time it was read
                        if stamp != last:
                            last_t = _timed(time_key, parse_time, stamp)
                            last = stamp
                        t = last_t
            except ParseError as e:
                event = fail(line, str(e))
                if event is not None:
                    append(event)
                continue
            append((tag, t, record))
        return out

    def parse(self, text: str) -> tuple[int | None, Record]:
        """One text's event time (None: it has none) and record; raises ParseError."""
        _, t, record = self.finished([text], [self.record(text)], "", None, _raise)[0]
        return t, record

    def parse_lines(self, lines: list[str], tag: str, origin: str) -> Batch:
        """Events of the lines that parse; the others go where `on_error` says."""
        now = now_ns()

        def fail(line: str, reason: str) -> Event | None:
            if self.reject(line, reason, origin):
                return tag, now, {"message": line, "parse_error": reason}
            return None
        return self.finished(lines, self.records_of(lines), tag, now, fail)

    def reject(self, raw: str, reason: str, origin: str) -> bool:
        """Count a text that did not parse and report it as `on_error` says; True: keep it."""
        mode = self.conf.on_error
        self.ctx.count("parse_errors")
        if mode == "error":
            self.ctx.error(f"cannot parse as {self.conf.type}: {reason}", origin=origin, data=raw,
                           kind="parse_error", fields={"message": raw})
        return mode == "keep"


plugin._BASES["parser"] = Parser


def _raise(line: str, reason: str) -> Event | None:
    raise ParseError(reason)


def _typed(key: str, conv: Callable[[Any], Any], value: Any) -> Any:
    try:
        return conv(value)
    except ParseError as e:
        raise ParseError(f"field {key!r}: {e}") from None


def _timed(key: str, parse_time: Any, value: Any) -> int:
    try:
        return parse_time(value)
    except TimeError as e:
        raise ParseError(f"field {key!r}: {e}") from None


class Format(Type):
    """`format:`: a parser's name, or a map of its options with `type`. `streams` are names the
    source reads as a byte stream of its own (stdin's json document, msgpack), kept as text."""

    def __init__(self, *streams: str):
        self.streams = streams
        self.name = "format name or map"

    def convert(self, value, path, errors, node):
        if isinstance(value, str):
            if value in self.streams:
                return value
            raw: dict = {"type": value}
        elif isinstance(value, dict):
            raw = value
        else:
            raise Invalid(f"expected a format name or a map with type:, got {_kind(value)}")
        name = raw.get("type")
        if not isinstance(name, str):
            raise Invalid("a format map needs type: (a format name)")
        try:
            cls = load("parser", name)
        except UnknownPlugin:
            known = sorted(set(self.streams) | set(names("parser")))
            raise Invalid(f"unknown format {name!r}{_did_you_mean(name, known)}; formats: "
                          + ", ".join(known)) from None
        return resolve(cls.all_options(), raw, path, errors)


def build(conf: Any, ctx: Context) -> Parser:
    """The parser a `Format` option's value describes, reporting through `ctx`; a bare name is
    a default (`format: lines` not written), which `check` never saw, with that format's defaults."""
    cls = load("parser", conf if isinstance(conf, str) else conf.type)
    assert issubclass(cls, Parser)
    if isinstance(conf, str):
        conf = resolve(cls.all_options(), {"type": conf}, "", Errors())
    return cls(ctx, conf)


class ParsedLines(LineDecoder):
    """A byte stream's lines through a parser (stdin, exec): gives events, not records, for the
    parser's event times (`events_of` says so to the type checker). Lines are UTF-8 (bad bytes become U+FFFD); empty lines are skipped."""

    def __init__(self, parser: Parser, tag: str, origin: str, max_line_bytes: int | None = None):
        super().__init__(max_line_bytes)
        self.parser, self.tag, self.origin = parser, tag, origin

    def lines(self, block):
        return self.parser.parse_lines(text_lines(block), self.tag, self.origin), []


def events_of(decoded: list[Any]) -> Batch:
    """What a ParsedLines decoder gave: events, where the Decoder interface says records."""
    return decoded
