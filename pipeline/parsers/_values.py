"""Typed and null values of parsed fields: `types:` (fluentd's names and `time:FORMAT`,
`array:DELIMITER`), `null_value_pattern` and `null_empty_string`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..codecs.encode import format_time
from ..config.options import Invalid, Type, _did_you_mean, _kind
from ._time import TimeError, TimeFormat, parser_of, zone


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


def _array(delimiter: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, list):
            return value
        text = value if type(value) is str else str(value)
        return text.split(delimiter) if text else []
    return convert


def _time(spec: str, tz_name: str) -> Callable[[Any], Any]:
    """`time:[ZONE:]FORMAT` as fluentd writes it; the value becomes RFC 3339 UTC text with
    its nanoseconds (a record field has no time type of its own)."""
    fmt, tz_name = _time_spec(spec, tz_name)
    parse = parser_of(fmt, tz_name)

    def convert(value: Any) -> Any:
        if value == "":
            return None
        try:
            return format_time(parse(value), "iso8601")
        except TimeError as e:
            raise ParseError(str(e)) from None
    return convert


def _time_spec(spec: str, tz_name: str) -> tuple[str | None, str]:
    """`time`, `time:FORMAT` or `time:ZONE:FORMAT` -> (format, zone); fluentd's `unixtime`
    and `float` are `unix` here."""
    arg = spec.partition(":")[2]
    head, sep, rest = arg.partition(":")
    if sep and "%" not in head:
        try:
            zone(head)
            arg, tz_name = rest, head
        except Invalid:
            pass
    return _FLUENTD_TIME_TYPES.get(arg, arg) or None, tz_name


_FLUENTD_TIME_TYPES = {"unixtime": "unix", "float": "unix"}


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int": _number(int, "an integer"), "float": _number(float, "a number"), "bool": _bool, "string": str,
    "hex": _number(lambda v: int(v, 16), "a hexadecimal integer"),  # Fluent Bit's
}
KINDS = (*CONVERTERS, "array", "time")


def converter(spec: str, tz_name: str) -> Callable[[Any], Any]:
    """The function a `types:` value names (checked by FieldType)."""
    kind = spec.partition(":")[0]
    if kind == "array":
        return _array(spec.partition(":")[2] or ",")
    if kind == "time":
        return _time(spec, tz_name)
    return CONVERTERS[kind]


class FieldType(Type):
    """A `types:` value: int (or fluentd's integer), float, bool, string, hex, array[:DELIMITER]
    (default `,`), time[:ZONE][:FORMAT] (default iso8601)."""

    name = "int|float|bool|string|hex|array[:DELIMITER]|time[:FORMAT]"

    def convert(self, value, path, errors, node):
        if not isinstance(value, str):
            raise Invalid(f"expected a type name, got {_kind(value)}")
        kind, sep, arg = value.partition(":")
        if kind == "integer":
            kind = "int"
        if kind not in KINDS:
            raise Invalid(f"unknown type {kind!r}{_did_you_mean(kind, KINDS)}; types: "
                          "int, float, bool, string, hex, array[:DELIMITER], time[:FORMAT]")
        if sep and kind in CONVERTERS:
            raise Invalid(f"{kind} takes no `:` option")
        if kind == "time" and arg:
            fmt, tz_name = _time_spec(value, "local")
            if fmt is not None:
                TimeFormat().convert(fmt, path, errors, node)
        return kind + sep + arg


def null_test(pattern: re.Pattern[str] | None, empty: bool) -> Callable[[str], bool] | None:
    """Which text values become null: the whole value matching `pattern`, or empty with
    `empty`; None: none does."""
    if pattern is None:
        return (lambda v: not v) if empty else None
    full = pattern.fullmatch
    if empty:
        return lambda v: not v or full(v) is not None
    return lambda v: full(v) is not None
