"""Values with placeholders (`${tag}`, `${tag_parts[N]}`, `${record.FIELD}`, `${hostname}`)
filled per event, and record key paths (`a.b`, `$.a.b`) as fluentd writes them: one way for
every plugin that names things by the event (the record filter's values, the grep filter's
keys, the Kafka sink's topic and key)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .options import Invalid, Str, Type


def getter(path: str) -> Callable[[dict], Any]:
    """A function giving the value at `path` in a record, or None where it is missing.
    A top-level key that holds dots itself (`a.b` as one key) is found first."""
    parts = tuple(path[2:].split(".")) if path.startswith("$.") else tuple(path.split("."))
    if len(parts) == 1:
        key = parts[0]
        return lambda record: record.get(key)

    def get(record: dict) -> Any:
        if path in record:
            return record[path]
        value: Any = record
        for part in parts:
            if type(value) is not dict:
                return None
            value = value.get(part)
        return value
    return get


class KeyPath(Str):
    name = "key path"

    def convert(self, value, path, errors, node):
        text = super().convert(value, path, errors, node)
        parts = text[2:].split(".") if text.startswith("$.") else text.split(".")
        if not all(parts):
            raise Invalid(f"expected a key path like a.b or $.a.b, got {text!r}")
        return text


PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_TAG_PART = re.compile(r"tag_parts\[(-?\d+)\]")
RECORD = re.compile(r"record\.((?:[^.\s}]+\.)*[^.\s}]+)")
PLACEHOLDERS = "${hostname}, ${tag}, ${tag_parts[N]} (N from 0; -1 is the last), ${record.FIELD}"

#: a part of a set value: (tag, record) -> its value
Part = Callable[[str, dict], Any]


def _part(name: str, hostname: str) -> Part:
    if name == "hostname":
        return lambda tag, record: hostname
    if name == "tag":
        return lambda tag, record: tag
    m = _TAG_PART.fullmatch(name)
    if m:
        index = int(m.group(1))

        def tag_part(tag: str, record: dict) -> Any:
            parts = tag.split(".")
            return parts[index] if -len(parts) <= index < len(parts) else None
        return tag_part
    m = RECORD.fullmatch(name)
    if m:
        get = getter(m.group(1))
        return lambda tag, record: get(record)
    raise Invalid(f"unknown placeholder ${{{name}}}; placeholders: {PLACEHOLDERS}")


def compile_value(value: Any, hostname: str = "") -> Callable[[str, dict], Any]:
    """A set value as a function of the event: a constant, one placeholder (its value keeps its
    type: `${record.status}` stays a number), or text with placeholders (missing ones empty)."""
    if not isinstance(value, str) or "${" not in value:
        return lambda tag, record: value
    pieces = PLACEHOLDER.split(value)
    if len(pieces) == 3 and not pieces[0] and not pieces[2]:
        return _part(pieces[1], hostname)
    parts: list[Part | str] = [p if i % 2 == 0 else _part(p, hostname) for i, p in enumerate(pieces) if p]

    def text(tag: str, record: dict) -> str:
        out = []
        for p in parts:
            if isinstance(p, str):
                out.append(p)
            else:
                v = p(tag, record)
                out.append("" if v is None else str(v))
        return "".join(out)
    return text


class Template(Type):
    """A value to set: any YAML value; in text, placeholders are checked here."""

    name = "value or template"

    def convert(self, value, path, errors, node):
        compile_value(value)
        return value
