"""Option declarations: the one place a plugin describes its settings.

A plugin lists `Option`s; from that list come validation (with the YAML line
of every problem), defaults, and the text of `pipeline plugins NAME`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class Invalid(Exception):
    """A value that does not fit its declared type."""


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()


class Type:
    """A value type: converts a YAML value or raises Invalid."""

    name = "any"

    def convert(self, value: Any, path: str, errors: Errors, node: Any) -> Any:
        return value

    def show(self, value: Any) -> Any:
        """A converted value as JSON holds it, near what the config said (the api's
        /api/components); a type whose values are objects of its own says how."""
        return plain(value)


def plain(value: Any) -> Any:
    """Any converted option value in JSON's terms: maps, lists, strings, numbers; a compiled
    regex as its pattern, a namespace (a struct) as a map, anything else as its text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, SimpleNamespace):
        return {k: plain(v) for k, v in vars(value).items()}
    if isinstance(value, re.Pattern):
        return value.pattern
    text = getattr(value, "text", None)  # a parsed expression keeps what it was parsed from
    if isinstance(text, str):
        return text
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return str(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"the number {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    return type(value).__name__


class TextInt(int):
    """An int that was text before YAML typed it (an unquoted `${VAR}`): a string option
    takes the text as written, leading zeros and all."""

    text: str


class TextFloat(float):
    text: str


def with_text(value: int | float, text: str) -> TextInt | TextFloat:
    number = TextInt(value) if isinstance(value, int) else TextFloat(value)
    number.text = text
    return number


class Reported(str):
    """Text whose problem is already reported (an unset `${VAR}`): not checked again, so
    one mistake gives one line. Such a value is never used: errors stop the load."""


def _convert(type: Type, value: Any, path: str, errors: Errors, node: Any) -> Any:
    return value if isinstance(value, Reported) else type.convert(value, path, errors, node)


class Str(Type):
    """Text. A YAML number is refused (`1.10` would become '1.1', `0123` 83), except where
    `numbers` says a bare number is the usual way to write the value (argv, env, headers)."""

    name = "string"

    def __init__(self, numbers: bool = False):
        self.numbers = numbers
        if numbers:
            self.name = "string or number"

    def convert(self, value, path, errors, node):
        if isinstance(value, str):
            return value
        if isinstance(value, (TextInt, TextFloat)):
            return value.text
        if self.numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise Invalid(f"expected a string, got {_kind(value)}")


class Bool(Type):
    name = "bool"

    def convert(self, value, path, errors, node):
        if isinstance(value, bool):
            return value
        raise Invalid(f"expected true or false, got {_kind(value)}")


class Int(Type):
    name = "int"

    def __init__(self, min: int | None = None, max: int | None = None):
        self.min, self.max = min, max

    def convert(self, value, path, errors, node):
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected an integer, got {_kind(value)}")
        if self.min is not None and value < self.min:
            raise Invalid(f"must be at least {self.min}, got {value}")
        if self.max is not None and value > self.max:
            raise Invalid(f"must be at most {self.max}, got {value}")
        return value


class Float(Type):
    name = "number"

    def __init__(self, min: float | None = None):
        self.min = min

    def convert(self, value, path, errors, node):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"expected a number, got {_kind(value)}")
        if self.min is not None and value < self.min:
            raise Invalid(f"must be at least {self.min}, got {value}")
        return float(value)


_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)?\s*$")


def parse_duration(text: str | int | float) -> float:
    """`1s`, `500ms`, `1.5m`, `2h` or a bare number of seconds -> seconds."""
    if isinstance(text, bool):
        raise Invalid(f"expected a duration like 10s or 500ms, got {_kind(text)}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise Invalid(f"a duration cannot be negative, got {text}")
        return float(text)
    m = _DURATION.match(str(text))
    if not m:
        raise Invalid(f"expected a duration like 10s, 500ms or 1m, got {_kind(text)}")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


class Duration(Type):
    """Seconds as a float; YAML takes `10s`, `500ms`, `1m`, `2h`, `1d` or a number."""

    name = "duration"

    def __init__(self, min: float | None = None):
        self.min = min

    def convert(self, value, path, errors, node):
        if not isinstance(value, (str, int, float)):
            raise Invalid(f"expected a duration like 10s or 500ms, got {_kind(value)}")
        seconds = parse_duration(value)
        if self.min is not None and seconds < self.min:
            raise Invalid(f"must be at least {self.min:g}s, got {value}")
        return seconds


_SIZE_UNITS = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


class Size(Type):
    """Bytes as an int; YAML takes `64KiB`, `256MiB`, `1GB` or a number of bytes."""

    name = "size"

    def convert(self, value, path, errors, node):
        if isinstance(value, bool):
            raise Invalid(f"expected a size like 64KiB or 256MiB, got {_kind(value)}")
        if isinstance(value, int):
            if value < 0:
                raise Invalid(f"a size cannot be negative, got {value}")
            return value
        m = _SIZE.match(str(value)) if isinstance(value, str) else None
        if not m or m.group(2).lower() not in _SIZE_UNITS:
            raise Invalid(f"expected a size like 64KiB or 256MiB, got {_kind(value)}")
        return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


class Regex(Type):
    """A Python regular expression, compiled at `check`: a bad one is a config error."""

    name = "regex"

    def __init__(self, named: bool = False):
        self.named = named

    def convert(self, value, path, errors, node):
        if not isinstance(value, str):
            raise Invalid(f"expected a regular expression, got {_kind(value)}")
        try:
            compiled = re.compile(value)
        except re.error as e:
            raise Invalid(f"not a valid regular expression: {e}") from None
        if self.named and not compiled.groupindex:
            raise Invalid("the pattern has no named group (?P<name>...): it would give empty records")
        return compiled


class Enum(Type):
    def __init__(self, *choices: str):
        self.choices = choices
        self.name = "|".join(choices)

    def convert(self, value, path, errors, node):
        if value not in self.choices:
            hint = _did_you_mean(str(value), self.choices)
            raise Invalid(f"expected one of {', '.join(self.choices)}, got {_kind(value)}{hint}")
        return value


class ListOf(Type):
    """A list; with `one`, a single item is taken as a list of it (`inputs: app`, as
    `match:` and `path:` take one pattern or several)."""

    def __init__(self, item: Type, one: bool = False):
        self.item = item
        self.one = one
        self.name = f"list of {item.name}" + (" (or one)" if one else "")

    def convert(self, value, path, errors, node):
        if self.one and not isinstance(value, list):
            try:
                return [_convert(self.item, value, path, errors, node)]
            except Invalid as e:
                raise Invalid(f"expected a list, or one {self.item.name}: {e}") from None
        if not isinstance(value, list):
            raise Invalid(f"expected a list, got {_kind(value)}")
        out = []
        for i, v in enumerate(value):
            sub = f"{path}[{i}]"
            try:
                out.append(_convert(self.item, v, sub, errors, _child(node, i)))
            except Invalid as e:
                errors.add(_line(node, i), sub, str(e))
        return out


class MapOf(Type):
    def __init__(self, value: Type):
        self.value = value
        self.name = f"map of {value.name}"

    def convert(self, value, path, errors, node):
        if not isinstance(value, dict):
            raise Invalid(f"expected a map, got {_kind(value)}")
        out = {}
        for k, v in value.items():
            sub = f"{path}.{k}"
            try:
                out[str(k)] = _convert(self.value, v, sub, errors, _child(node, k))
            except Invalid as e:
                errors.add(_line(node, k), sub, str(e))
        return out


class OneOf(Type):
    """The first of several types that accepts the value (e.g. a string or a list)."""

    def __init__(self, *types: Type):
        self.types = types
        self.name = " or ".join(t.name for t in types)

    def convert(self, value, path, errors, node):
        problems = []
        for t in self.types:
            try:
                return t.convert(value, path, errors, node)
            except Invalid as e:
                problems.append(str(e))
        raise Invalid(" / ".join(problems))


class Struct(Type):
    """A nested map with its own declared options (e.g. a server, a buffer)."""

    def __init__(self, *options: Option, name: str = "map"):
        self.options = options
        self.name = name

    def convert(self, value, path, errors, node):
        if not isinstance(value, dict):
            raise Invalid(f"expected a map, got {_kind(value)}")
        return resolve(self.options, value, path, errors)


@dataclass(frozen=True)
class Option:
    name: str
    type: Type
    default: Any = REQUIRED
    help: str = ""
    #: shown masked wherever the config is shown (the api's /api/components)
    secret: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass
class Errors:
    """Every problem found in a config, each with its YAML line and dotted path."""

    file: str = "<config>"
    items: list[tuple[int, str, str]] = field(default_factory=list)
    #: what runs but is likely a mistake (a source nothing reads): printed, never fatal
    warnings: list[tuple[int, str, str]] = field(default_factory=list)

    def add(self, line: int | None, path: str, message: str) -> None:
        self.items.append((line or 0, path, message))

    def warn(self, line: int | None, path: str, message: str) -> None:
        self.warnings.append((line or 0, path, "warning: " + message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def lines(self) -> list[str]:
        """Errors and warnings in file order, each `FILE:LINE: key.path: message`."""
        return self._format(self.items + self.warnings)

    def warning_lines(self) -> list[str]:
        return self._format(self.warnings)

    def _format(self, items: list[tuple[int, str, str]]) -> list[str]:
        out = []
        for line, path, message in sorted(items, key=lambda i: i[0]):
            where = f"{self.file}:{line}" if line else self.file
            out.append(f"{where}: {path}: {message}" if path else f"{where}: {message}")
        return out


def _line(node: Any, key: Any = None) -> int | None:
    """The YAML line of `node[key]` (or of `node`) as recorded by the config loader."""
    lines = getattr(node, "lines", None)
    if key is not None and lines and key in lines:
        return lines[key]
    return getattr(node, "line", None)


def _child(node: Any, key: Any) -> Any:
    try:
        return node[key]
    except (KeyError, IndexError, TypeError):
        return None


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def resolve(options: Sequence[Option], raw: dict, path: str, errors: Errors,
            ignore: Iterable[str] = ()) -> SimpleNamespace:
    """Check `raw` against `options`; return every option's value, defaults filled in."""
    known = {o.name: o for o in options}
    values: dict[str, Any] = {}
    skip = set(ignore)
    for key in raw:
        if key not in known and key not in skip:
            hint = _did_you_mean(str(key), list(known) + list(skip))
            errors.add(_line(raw, key), _join(path, key), f"unknown option{hint}")
    for opt in options:
        sub = _join(path, opt.name)
        if opt.name not in raw or (raw[opt.name] is None and not opt.required):
            if opt.required:
                errors.add(_line(raw), sub, "missing required option")
            if isinstance(opt.type, Struct) and isinstance(opt.default, dict):
                values[opt.name] = resolve(opt.type.options, opt.default, sub, errors)
            else:
                values[opt.name] = None if opt.required else _copy_default(opt.default)
            continue
        try:
            values[opt.name] = _convert(opt.type, raw[opt.name], sub, errors, raw[opt.name])
        except Invalid as e:
            errors.add(_line(raw, opt.name), sub, str(e))
            values[opt.name] = None if opt.required else _copy_default(opt.default)
    return SimpleNamespace(**values)


def _copy_default(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return type(value)(value)
    return value


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)
