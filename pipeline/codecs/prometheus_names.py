"""Records as Prometheus samples: which fields are values and which are labels, and the
metric names, types and help texts they get. Declared once for every sink that speaks
Prometheus (the exporter, remote write), so one config means the same series in both."""

from __future__ import annotations

import re
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from ..config.fields import Check, Fields
from ..config.options import ListOf, Option, Str

SERIES_OPTIONS = (
    Option("prefix", Str(), "", "prefix of every metric name"),
    Option("labels", ListOf(Str()), [], "fields whose values become labels"),
    Option("fields", ListOf(Str()), ["*"], "glob patterns of the fields to export"),
    Option("counters", ListOf(Str()), [], "glob patterns of fields to type as counters"),
)

_BAD_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_BAD_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(prefix: str, field: str) -> str:
    name = _BAD_NAME.sub("_", prefix + field)
    return "_" + name if name[:1].isdigit() else name


def check_labels(conf: Any, upstream: Fields | None, check: Check) -> None:
    """`check`'s warning where records of one run carry the same fields (one per worker) and no
    label tells them apart: they would be one series, of which the exporter shows the last and a
    receiver takes one sample a time, refusing the others."""
    if upstream is not None and upstream.many and not conf.labels:
        check.warn("labels", "several records a run carry the same fields, so they would be the same "
                   "series: set labels to the field that tells them apart (e.g. [id])")


def label_name(field: str) -> str:
    """A field as a label name: Prometheus takes [a-zA-Z_][a-zA-Z0-9_]* only (no `:`, unlike
    metric names), and `__` starts the names it keeps for itself."""
    name = _BAD_LABEL.sub("_", field)
    if name.startswith("__"):
        return "_" + name.lstrip("_")
    return "_" + name if name[:1].isdigit() or not name else name


class SeriesNames:
    """The metric of each field (`prefix` + the field, characters outside [a-zA-Z0-9_:] as `_`;
    a counter's name ends in `_total`, added when the field lacks it, as Prometheus names
    counters) and the labels of each record (the `labels` fields that it holds)."""

    def __init__(self, conf: Any, component: str, inputs: Sequence[str]):
        self.conf = conf
        self.label_fields = [(field, label_name(field)) for field in conf.labels]
        self.types: dict[str, str] = {}
        self.helps: dict[str, str] = {}
        self._origin = f"of the events from {', '.join(inputs)} (sink {component})"
        self._names: dict[str, str | None] = {}

    def metric(self, field: str) -> str | None:
        """The metric name of a field, or None when the field is not exported (cached)."""
        if field not in self._names:
            conf = self.conf
            keep = field not in conf.labels and any(fnmatchcase(field, p) for p in conf.fields)
            name = metric_name(conf.prefix, field) if keep else None
            if name is not None:
                counter = any(fnmatchcase(field, p) for p in conf.counters)
                if counter and not name.endswith("_total"):
                    name += "_total"
                self.types[name] = "counter" if counter else "gauge"
                self.helps[name] = f"field {field} {self._origin}"
            self._names[field] = name
        return self._names[field]

    def labels(self, record: dict) -> tuple[tuple[str, str], ...]:
        """(label, value) of each `labels` field the record holds; null and empty values are
        left out, as Prometheus takes an empty label for a missing one."""
        out = []
        for field, name in self.label_fields:
            value = record.get(field)
            if value is not None and value != "":
                out.append((name, str(value)))
        return tuple(out)

    def values(self, record: dict) -> list[tuple[str, int | float]]:
        """(metric, value) of each exported numeric field of the record."""
        known = self._names
        out = []
        for field, value in record.items():
            kind = type(value)  # most values are exactly one of these: no isinstance for them
            if kind is float or kind is int or (kind is not bool and isinstance(value, (int, float))):
                name = known[field] if field in known else self.metric(field)
                if name is not None:
                    out.append((name, value))
        return out
