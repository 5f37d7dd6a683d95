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
from ..codecs.formats import LineDecoder
from ..config.options import (
    Bool,
    Enum,
    Errors,
    Invalid,
    MapOf,
    Option,
    Regex,
    Str,
    Type,
    _did_you_mean,
    _kind,
    _line,
    resolve,
)
from ..engine.context import Context
from ..event import Batch, Event, Record, now_ns
from ..plugin import Plugin, UnknownPlugin, load, names
from ._time import TimeError, TimeFormat, TimeZone, parser_of
from ._values import CONVERTERS, FieldType, ParseError, converter, null_test

ON_ERROR = Option("on_error", Enum("error", "keep", "drop"), "error",
                  "a line that does not parse: error (to _errors with the line), keep (emitted as "
                  "{message: line, parse_error: reason}) or drop; each counted")


def time_options(time_key: str | None = None, time_format: str | None = None,
                 types: dict[str, str] | None = None) -> tuple[Option, ...]:
    """The options of a parser that gives event times and typed values, with its defaults."""
    return (
        Option("time_key", Str(), time_key, "the field holding the event time; \"\": none, the time the line was read"),
        Option("time_format", TimeFormat(), time_format,
               "a strptime format (fluentd's %N, %L too; fractions kept to the ns; without a year: "
               "syslog's), or iso8601, unix, unix_ms, unix_ns, syslog (RFC 3164 or 3339)"
               + ("" if time_format else "; default: iso8601")),
        Option("timezone", TimeZone(), "local",
               "zone of times written without an offset: local (the machine's), UTC, +09:00 or a name"),
        Option("keep_time_key", Bool(), False, "keep the time field in the record"),
        Option("types", MapOf(FieldType()), dict(types or {}),
               "field -> int, float, bool, string, hex, array[:DELIMITER] (default `,`) or time[:FORMAT] "
               "(RFC 3339 UTC text); `-` or empty is null for numbers"),
        Option("null_value_pattern", Regex(), None, "a text value this regex matches whole is null"),
        Option("null_empty_string", Bool(), False, "an empty text value is null"),
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
        self.typed = tuple((k, converter(v, conf.timezone)) for k, v in types.items() if v != "int")
        self.nulls = null_test(getattr(conf, "null_value_pattern", None), getattr(conf, "null_empty_string", False))
        self.time_key: str = getattr(conf, "time_key", None) or ""
        self.parse_time = parser_of(conf.time_format, conf.timezone) if self.time_key else None
        self.keep_time = getattr(conf, "keep_time_key", False)
        #: a format that could read a time but was given no time_key: the first record with a
        #: `time` field says so once (fluentd's json, ltsv, regexp and csv read it by default)
        self.hint_time = hasattr(conf, "time_key") and conf.time_key is None

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
        parse_time, nulls = self.parse_time, self.nulls
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
                # the time first, from the text as written, as fluentd does: a typed time field
                # (`types: {time: time}` with keep_time_key) is read before it is converted
                if time_key:
                    stamp = record.get(time_key) if keep else record.pop(time_key, None)
                    if stamp is not None:  # else no time in this line: the time it was read
                        if stamp != last:
                            last_t = _timed(time_key, parse_time, stamp)
                            last = stamp
                        t = last_t
                if nulls is not None:
                    for key, value in record.items():
                        if type(value) is str and nulls(value):
                            record[key] = None
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
        events = self.finished(lines, self.records_of(lines), tag, now, fail)
        if self.hint_time and events and "time" in events[0][2]:
            self.hint_time = False
            self.ctx.log.info("records have a `time` field, but no time_key is set: the event time is "
                              "the time each line was read (fluentd would read `time`; set time_key: "
                              "time and its time_format to use it)")
        return events

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
        conf = resolve(cls.all_options(), raw, path, errors)
        if "time_format" in raw and not getattr(conf, "time_key", None):
            errors.warn(_line(raw, "time_format"), f"{path}.time_format",
                        "time_format without time_key: no field is read as the event time (set "
                        "time_key: the field that holds it)")
        return conf


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
        text = block.decode("utf-8", "replace")
        if "\r" in text:
            text = text.replace("\r\n", "\n").removesuffix("\r")
        lines = text.split("\n")
        if "" in lines:
            lines = [line for line in lines if line]
        return self.parser.parse_lines(lines, self.tag, self.origin), []


def events_of(decoded: list[Any]) -> Batch:
    """What a ParsedLines decoder gave: events, where the Decoder interface says records."""
    return decoded
