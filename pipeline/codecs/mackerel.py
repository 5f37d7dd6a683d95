"""mackerel-agent's plugin protocol: the value lines a run prints and the graph definitions
the agent asks for (MACKEREL_AGENT_PLUGIN_META=1), both from one naming rule so that every
printed name has its graph.

mackerel-agent posts `NAME<TAB>VALUE<TAB>EPOCH` as `custom.NAME`, and a graph GRAPH of the
meta defines its metric METRIC as `custom.GRAPH.METRIC`, where `#` (in GRAPH) and `*` (as
METRIC) each stand for one dot-free part. A name is PREFIX.VALUES.PATH where VALUES are the
record's `name_by` values and PATH its field's keys; a field whose kind the config declares
(pipeline/config/fields.py) has a part for its kind put before its last part, so that each
graph holds one unit: `uwsgi.worker.1.bytes.rss`, `uwsgi.worker.1.per_minute.requests`.

The agent keeps no previous values and its meta has no `diff`: a plugin gives a counter's
increase itself (go-mackerel-plugin-helper's `Diff`: per minute, none on the first run, after
a reset or after a gap of more than 10 minutes). So does this encoder, keeping the last
values (its state) between `--once` runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, Protocol

from ..config import fields as field_kinds
from ..config.fields import LABEL, LIST, Fields, Path
from ..event import Batch, Record, get_path


class Diffs(Protocol):
    """Where a counter's last value is kept: pipeline/metrics/rates.py's RateTracker, given by
    the sink (per second, gaps past MAX_GAP giving nothing)."""

    def update(self, key: tuple[Any, ...], value: int | float, time_ns: int) -> float | None: ...

    def save_state(self) -> Any: ...

    def load_state(self, state: Any) -> None: ...


class Graphed(NamedTuple):
    part: str          # the name part that gives the kind its own graph
    unit: str          # mackerel's unit of that graph
    label: str
    per: float | None  # a counter: its increase per this many seconds is printed


#: how each kind of field is graphed; LABEL (an id, a pid, an epoch time) is not printed
KINDS = {
    field_kinds.GAUGE: Graphed("float", "float", "", None),
    field_kinds.INTEGER: Graphed("integer", "integer", "", None),
    field_kinds.BYTES: Graphed("bytes", "bytes", "", None),
    field_kinds.PERCENT: Graphed("percentage", "percentage", "", None),
    field_kinds.MICROSECONDS: Graphed("microseconds", "float", " (microseconds)", None),
    field_kinds.COUNTER: Graphed("per_minute", "integer", " (increase per minute)", 60.0),
    field_kinds.BYTES_COUNTER: Graphed("bytes_per_second", "bytes/sec", "", 1.0),
    field_kinds.TIME_COUNTER: Graphed("microseconds_per_second", "float", " (microseconds per second)", 1.0),
    field_kinds.RATE: Graphed("rate", "float", " (rate)", None),
    field_kinds.BYTES_RATE: Graphed("bytes_per_second", "bytes/sec", "", None),
}
#: the graph of names that have no dot: mackerel-agent defines a graph's metrics as
#: GRAPH.METRIC, so a name of one part could never have a graph of its own
MACKEREL_GRAPH = "pipeline"
#: a counter's last sample older than this gives no increase (go-mackerel-plugin-helper's limit)
MAX_GAP = 600.0
#: distinct field keys whose graph is remembered; past it, forgotten and found again
MEMO_SIZE = 100_000

_BAD = re.compile(r"[^A-Za-z0-9._-]")
_PATTERN_BAD = re.compile(r"[^A-Za-z0-9_*-]")
_SKIP = object()
_MISSING = object()


def _name_part(value: Any) -> str:
    # one part, whatever the value: a dot in it would make a name no graph's `#` matches
    text = "" if value is None else _BAD.sub("_", str(value)).replace(".", "_")
    return text or "_"


def _numeric_items(record: Record, prefix: str, skip: Iterable[str] = ()) -> Iterator[tuple[str, Any]]:
    for k, v in record.items():
        if k in skip:
            continue
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            yield from _numeric_items(v, key)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            if isinstance(v, float) and not math.isfinite(v):
                continue
            yield key, v


def _one_part(pattern: str) -> re.Pattern[str]:
    # `*` is one name part, as for mackerel's wildcards: `workers.*.requests` is not a core's
    # `workers.0.cores.1.requests`
    return re.compile(re.escape(pattern).replace(r"\*", "[^.]*"))


def _name(parts: list[str], kind: str | None) -> list[str]:
    if kind is not None:
        return [*parts[:-1], KINDS[kind].part, parts[-1]]
    return [MACKEREL_GRAPH, *parts] if len(parts) == 1 else parts


class MackerelEncoder:
    """The value lines of a batch. `fields`: what the config tells of the records' fields (None:
    it cannot tell, and every numeric field is printed as it is named); `metrics`: more fields,
    dotted, `*` for a part that varies. With `fields`, only the fields it or `metrics` names
    are printed: those the meta has graphs for."""

    def __init__(self, fields: Fields | None, prefix: str = "", name_by: list[str] | tuple[str, ...] = (),
                 metrics: Iterable[str] = (), diffs: Diffs | None = None):
        self.prefix = [prefix] if prefix else []
        self.name_by = tuple(name_by)
        self.declared = None if fields is None else [
            (_one_part(".".join(path)), kind) for path, kind in declared_fields(fields, metrics)]
        self.memo: dict[str, Any] = {}
        #: whether any field is a counter, printed as its increase since the last run
        self.has_counters = any(KINDS[k].per for k in (fields.kinds.values() if fields else ()) if k in KINDS)
        self.diffs = diffs
        if self.has_counters and diffs is None:
            raise ValueError("counters are printed as increases: give the encoder somewhere to keep them")

    def kind(self, key: str) -> Any:
        """The kind of the field of dotted `key` (None: declared without one), _SKIP for one
        that is not printed."""
        found = self.memo.get(key, _MISSING)
        if found is not _MISSING:
            return found
        found = _SKIP
        for pattern, kind in self.declared or ():
            if pattern.fullmatch(key):
                found = _SKIP if kind == LABEL else kind
                break
        if len(self.memo) >= MEMO_SIZE:
            self.memo.clear()
        self.memo[key] = found
        return found

    def encode(self, batch: Batch) -> bytes:
        out = []
        name_by, declared = self.name_by, self.declared is not None
        for _, t, record in batch:
            epoch = t // 1_000_000_000
            head = [*self.prefix, *(_name_part(get_path(record, k)) for k in name_by)]
            for key, value in _numeric_items(record, "", name_by):
                kind = self.kind(key) if declared else None
                if kind is _SKIP:
                    continue
                name = _BAD.sub("_", ".".join(_name(head + key.split("."), kind)))
                per = KINDS[kind].per if kind is not None else None
                if per is not None and self.diffs is not None:
                    rate = self.diffs.update((name,), value, t)
                    if rate is None:
                        continue
                    value = rate * per
                out.append(f"{name}\t{value}\t{epoch}\n")
        return "".join(out).encode()

    def save_state(self) -> Any:
        return self.diffs.save_state() if self.diffs is not None else None

    def load_state(self, state: Any) -> None:
        if self.diffs is not None:
            self.diffs.load_state(state)


def declared_fields(fields: Fields | None, metrics: Iterable[str]) -> list[tuple[Path, str | None]]:
    """The fields with graphs: those the config tells, and those `metrics` adds (of no kind)."""
    known = [(p, fields.kind(p)) for p in fields.paths] if fields is not None else []
    return known + [((m,), None) for m in metrics]


def mackerel_graphs(fields: Fields | None, prefix: str = "", name_by: list[str] | tuple[str, ...] = (),
                    metrics: Iterable[str] = ()) -> dict[str, Any]:
    """The graph definitions for the names MackerelEncoder gives: a graph per name minus its
    last part, the last part a metric of it. A part that varies (a worker's id from `name_by`,
    a listener's key) is `#` in a graph name and `*` as a metric, the wildcards mackerel-agent's
    plugins use; lists are not printed, so neither defined."""
    graphs: dict[str, dict[str, Any]] = {}
    head = prefix.split(".") * bool(prefix) + ["*"] * len(name_by)
    for path, kind in declared_fields(fields, metrics):
        if LIST in path or (len(path) == 1 and path[0] in name_by) or kind == LABEL:
            continue
        parts = _name(head + [_PATTERN_BAD.sub("_", p) for p in ".".join(path).split(".")], kind)
        graph = ".".join("#" if "*" in p else p for p in parts[:-1])
        metric = "*" if "*" in parts[-1] else parts[-1]
        shown = KINDS[kind] if kind is not None else KINDS[field_kinds.GAUGE]._replace(label="")
        entry = graphs.setdefault(graph, {"label": graph + shown.label, "unit": shown.unit, "metrics": []})
        if all(m["name"] != metric for m in entry["metrics"]):
            entry["metrics"].append({"name": metric, "label": metric})
    return graphs
