"""Record key paths as fluentd writes them: `$.kubernetes.labels.app`, or `a.b`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config.options import Invalid, Str


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
