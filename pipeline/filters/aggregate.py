"""Filter `aggregate`: windowed metrics per group (Norikra's `win:time_batch`, in line)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..config.options import Bool, Duration, Enum, Float, Int, Invalid, ListOf, MapOf, Option, Str
from ..event import Batch, Record
from ..metrics.aggregates import (
    SCALARS,
    Distinct,
    FieldPath,
    Metric,
    MetricExpr,
    Num,
    Values,
    getter,
    hashable,
    kind_of,
)
from ..metrics.sketch import Mapping
from ..plugin import Filter

NS = 1_000_000_000
#: after a long stop, at most this many empty windows in a row are emitted (emit_empty)
MAX_EMPTY_CATCH_UP = 1000
STATE_VERSION = 1
#: where a group's pending values start (after events, group values and times)
PENDING = 3
#: a group's pending values go to its accumulators every 256 events (a mask)
DRAIN_EVERY = 255


class Accuracy(Float):
    name = "fraction"

    def convert(self, value, path, errors, node):
        value = super().convert(value, path, errors, node)
        if not 0 < value < 1:
            raise Invalid(f"expected a fraction between 0 and 1 (0.01 is 1%), got {value}")
        return value


class AggregateFilter(Filter):
    """One record per window and group: count, sum, avg, min, max, stddev, percentiles...

    Windows are aligned to the clock (a 1m window runs from one whole minute to the next);
    with `every` shorter than `window` they slide (window 5m, every 1m: each minute, the
    last five). A window's records come at its end (plus `allowed_lateness`), from the
    runtime's clock: `window_start` and `window_end` (unix seconds), the `group_by` values
    (`tag` is the event's tag) and one field per metric. The result's time is the window's
    start (`result_time`). The filter passes no input on: feed raw records to other
    outputs from the same input.

    Metrics are `name: func(field)`: count() (events), count(f) (values present), sum, avg,
    min, max, stddev (the sample's), first, last (by event time), count_distinct, and
    percentiles `p50`, `p90`, `p99`, `p999` or `percentile(f, 99.9)`. Percentiles come from a
    DDSketch: within `percentile_accuracy` (default 1%) of the true value, in bounded memory.
    A field may be a dotted path into nested records: `workers.0.avg_rt`, or as Norikra
    writes it, `workers.$0.avg_rt`. A missing or non-numeric value is skipped and counted
    per metric (`missing.NAME`, `non_numeric.NAME`); an empty window emits nothing unless
    `emit_empty` (then count 0, sum 0, the rest null, for every group seen before).

    With `time: event`, an event whose window has closed (its end plus `allowed_lateness`
    has passed) goes to `_errors` as `late`, counted. With a `state_dir`, open windows are
    kept between runs: `--once` every 10 s continues the minute's window, and each run first
    emits the windows that have closed since the last. On stop the open window is kept for
    the next run, not emitted half-full, unless `flush_on_stop`.
    """

    stateful = True
    options = (
        Option("window", Duration(min=0.001), 60.0, "length of a window, aligned to the clock"),
        Option("every", Duration(min=0.001), None, "start a window this often (sliding); default: window"),
        Option("group_by", ListOf(FieldPath()), [], "fields (dotted paths allowed) and/or `tag`"),
        Option("metrics", MapOf(MetricExpr()), help="name: func(field), e.g. rt_p99: p99(avg_rt)"),
        Option("time", Enum("event", "arrival"), "event", "window by the event's time or by arrival"),
        Option("allowed_lateness", Duration(), 0.0,
               "with time: event, a window closes this long after its end; later events are late"),
        Option("emit_empty", Bool(), False, "emit windows with no events (count 0, the rest null)"),
        Option("flush_on_stop", Bool(), False, "on stop, emit the open windows half-full instead of keeping them"),
        Option("result_time", Enum("start", "end"), "start", "time of the result events: window start or end"),
        Option("tag", Str(), None, "tag of the results (default: the filter's id)"),
        Option("percentile_accuracy", Accuracy(), 0.01, "relative error bound of the percentiles"),
        Option("max_groups", Int(min=1), 100000,
               "most groups in one window; events of further groups go to _errors"),
        Option("max_distinct", Int(min=1), 100000, "count_distinct is exact up to this many values"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.W = round(conf.window * NS)
        self.E = round((conf.every or conf.window) * NS)
        self.by_event = conf.time == "event"
        self.close_after = self.W + (round(conf.allowed_lateness * NS) if self.by_event else 0)
        self.tick_interval = min(1.0, max(self.E / NS / 10, 0.01))
        self.out_tag: str = conf.tag or ctx.id
        self.metrics: dict[str, Metric] = conf.metrics
        # one accumulator per (field, kind): metrics over one field share it
        slots: dict[tuple[str | None, str], list[str]] = {}
        for name, m in self.metrics.items():
            if m.field is not None:
                slots.setdefault((m.field, kind_of(m)), []).append(name)
        self.slots = list(slots)
        self.mapping = Mapping(conf.percentile_accuracy)
        needs = {key: [self.metrics[n] for n in names] for key, names in slots.items()}
        self.factories: list[Callable[[], Any]] = [self._factory(kind, needs[(f, kind)]) for f, kind in self.slots]
        self.skip_names = list(slots.values())
        # a group: [events, group values, event times (for first/last) or None,
        #           pending values per slot..., accumulator per slot...]
        self.acc0 = PENDING + len(self.slots)
        # a plain key is read in line (`record.get`), a path through its getter
        self.specs = [(None if "." in f else f, getter(f), PENDING + i)  # type: ignore[operator, arg-type]
                      for i, (f, _) in enumerate(self.slots)]
        self.timed = any(kind == "any" for _, kind in self.slots)
        self.results = [(name, self._result(m)) for name, m in self.metrics.items()]
        self.group_getters = [_group_getter(f) for f in conf.group_by]
        one = conf.group_by[0] if len(conf.group_by) == 1 else None
        # one plain field is the key itself (no tuple, no call): the common case
        self.key_field = one if one and one != "tag" and "." not in one else None
        self.keyf = self._key_function(self.group_getters)
        self.windows: dict[int, dict[Any, list[Any]]] = {}
        self.known: dict[Any, Record] = {}  # groups seen, for emit_empty
        self.next_start = self._last_due(time.time_ns()) + self.E
        self.next_due = self.next_start + self.close_after

    # ---- set-up

    def _factory(self, kind: str, metrics: list[Metric]) -> Callable[[], Any]:
        if kind == "num":
            var = any(m.func == "stddev" for m in metrics)
            mapping = self.mapping if any(m.func == "percentile" for m in metrics) else None
            return lambda: Num(var, mapping)
        if kind == "distinct":
            return lambda: Distinct(self.conf.max_distinct)
        return Values

    def _result(self, m: Metric) -> Callable[[list[Any]], Any]:
        if m.field is None:
            return lambda g: g[0]
        i = self.acc0 + self.slots.index((m.field, kind_of(m)))
        return lambda g: g[i].result(m)

    @staticmethod
    def _key_function(gets: list[Callable[[str, Record], Any]]) -> Callable[[str, Record], tuple[Any, ...]]:
        if not gets:
            return lambda tag, r: ()
        if len(gets) == 1:
            one = gets[0]
            return lambda tag, r: (hashable(one(tag, r)),)
        return lambda tag, r: tuple(hashable(g(tag, r)) for g in gets)

    def _group_values(self, tag: str, record: Record) -> Record:
        return {f: get(tag, record) for f, get in zip(self.conf.group_by, self.group_getters)}

    def _new_group(self, values: Record) -> list[Any]:
        return [0, values, [] if self.timed else None, *([] for _ in self.slots),
                *(make() for make in self.factories)]

    def _drain(self, g: list[Any]) -> None:
        """Hand a group's pending values to its accumulators; count the skipped per metric."""
        times, counters = g[2], self.ctx.counters
        for j, names in enumerate(self.skip_names):
            pending = g[PENDING + j]
            skipped = g[self.acc0 + j].add_many(pending, times)
            if skipped:
                missing = skipped.count(None)
                for name in names:
                    if missing:
                        counters[f"missing.{name}"] += missing
                    if len(skipped) > missing:
                        counters[f"non_numeric.{name}"] += len(skipped) - missing
            pending.clear()
        if times:
            times.clear()

    def _last_due(self, now: int) -> int:
        """The start of the latest window that has closed by `now`."""
        s = now - self.close_after
        return s - s % self.E

    # ---- events in

    def process(self, batch: Batch) -> Batch:
        now = time.time_ns()
        out = self.tick(now) if now >= self.next_due else []
        W, E, close_after, by_event = self.W, self.E, self.close_after, self.by_event
        sliding = E != W
        windows, keyf, specs, key_field, timed = self.windows, self.keyf, self.specs, self.key_field, self.timed
        for tag, t, record in batch:
            when = t if by_event else now
            last = when - when % E
            starts = range(last - (W - (when - last) - 1) // E * E, last + 1, E) if sliding else (last,)
            taken = False
            for s in starts:
                if s + close_after <= now:
                    continue
                win = windows.get(s)
                if win is None:
                    win = windows[s] = {}
                    if s + close_after < self.next_due:
                        self.next_due = s + close_after
                if key_field is not None:
                    key = record.get(key_field)
                    if key.__class__ not in SCALARS:
                        key = hashable(key)
                else:
                    key = keyf(tag, record)
                g = win.get(key)
                if g is None:
                    if len(win) >= self.conf.max_groups:
                        self.ctx.error(f"more than max_groups={self.conf.max_groups} groups in a window, "
                                       "event left out", origin=tag, data=record, kind="too_many_groups")
                        break
                    g = win[key] = self._new_group(self._group_values(tag, record))
                    if self.conf.emit_empty:
                        self._remember(key, g[1])
                for plain, get, i in specs:
                    g[i].append(record.get(plain) if plain is not None else get(record))
                if timed:
                    g[2].append(when)
                g[0] += 1
                if not g[0] & DRAIN_EVERY:
                    self._drain(g)
                taken = True
            if not taken and starts and starts[-1] + close_after <= now:
                self.ctx.error(f"late event: its window closed (allowed_lateness "
                               f"{self.conf.allowed_lateness:g}s)", origin=tag, data=record, kind="late")
        return out

    def _remember(self, key: Any, values: Record) -> None:
        known = self.known
        known.pop(key, None)
        known[key] = values
        if len(known) > self.conf.max_groups:
            del known[next(iter(known))]

    # ---- results out

    def tick(self, now: int) -> Batch:
        """Emit every window that has closed by `now`."""
        last = self._last_due(now)
        due = {s for s in self.windows if s <= last}
        if self.conf.emit_empty:
            first = max(self.next_start, last - (MAX_EMPTY_CATCH_UP - 1) * self.E)
            due.update(range(first, last + 1, self.E))
        self.next_start = max(self.next_start, last + self.E)
        out: Batch = []
        for s in sorted(due):
            out += self._emit(s, self.windows.pop(s, None))
        self.next_due = min(min(self.windows, default=self.next_start), self.next_start) + self.close_after
        return out

    def _emit(self, start: int, groups: dict[Any, list[Any]] | None) -> Batch:
        if not groups:
            groups = {k: self._new_group(v) for k, v in self.known.items()} if self.conf.emit_empty else {}
            if not groups and self.conf.emit_empty and not self.conf.group_by:
                groups = {(): self._new_group({})}
        end = start + self.W
        t = start if self.conf.result_time == "start" else end
        head = {"window_start": _seconds(start), "window_end": _seconds(end)}
        out: Batch = []
        for g in groups.values():
            self._drain(g)
            record = {**head, **g[1]}
            for name, result in self.results:
                record[name] = result(g)
            for acc in g[self.acc0:]:
                if isinstance(acc, Distinct) and acc.overflow:
                    self.ctx.count("distinct_overflow", acc.overflow)
            out.append((self.out_tag, t, record))
        return out

    def flush(self) -> Batch:
        out = self.tick(time.time_ns())
        if self.conf.flush_on_stop:
            for s in sorted(self.windows):
                out += self._emit(s, self.windows.pop(s))
        elif self.windows and self.ctx.state_dir is None:
            self.ctx.log.warning("%d open window(s) dropped: no state_dir to keep them in, "
                                 "and flush_on_stop is false", len(self.windows))
        return out

    # ---- state between runs

    def _layout(self) -> list[Any]:
        return [self.W, self.E, [list(s) for s in self.slots], list(self.conf.group_by),
                self.conf.percentile_accuracy]

    def save_state(self) -> Any:
        for groups in self.windows.values():
            for g in groups.values():
                self._drain(g)
        return {"version": STATE_VERSION, "layout": self._layout(), "next_start": self.next_start,
                "windows": [[s, [[k, g[0], g[1], [a.to_state() for a in g[self.acc0:]]] for k, g in groups.items()]]
                            for s, groups in self.windows.items()],
                "known": [[k, v] for k, v in self.known.items()]}

    def load_state(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            return
        if state.get("layout") != self._layout():
            self.ctx.log.warning("saved windows were made with other window, metrics or group_by "
                                 "settings: not continued")
            self.ctx.count("state_discarded")
            return
        try:
            for s, groups in state["windows"]:
                win = self.windows.setdefault(s, {})
                for key, count, values, accs in groups:
                    key = key if self.key_field else tuple(key)
                    g = win[key] = self._new_group(values)
                    g[0] = count
                    for acc, a in zip(g[self.acc0:], accs, strict=True):
                        acc.load(a)
            for key, values in state["known"]:
                self.known[key if self.key_field else tuple(key)] = values
            self.next_start = min(self.next_start, state["next_start"])
        except (TypeError, ValueError, KeyError) as e:
            self.ctx.log.warning("ignoring a damaged state: %s", e)
            self.windows.clear()
            self.known.clear()
            return
        self.next_due = min(min(self.windows, default=self.next_start), self.next_start) + self.close_after


def _group_getter(field: str) -> Callable[[str, Record], Any]:
    if field == "tag":
        return lambda tag, r: tag
    get = getter(field)
    return lambda tag, r: get(r)


def _seconds(ns: int) -> int | float:
    return ns // NS if ns % NS == 0 else ns / NS


PLUGIN = AggregateFilter
