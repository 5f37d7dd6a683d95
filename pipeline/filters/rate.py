"""Filter `rate`: per-second rates from cumulative counters."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from ..config.fields import fields_of
from ..config.options import Bool, Duration, Enum, Int, ListOf, Option, Str
from ..event import Batch, get_path
from ..metrics.rates import RateTracker, time_ns
from ..plugin import Filter

#: records after which a configured field never seen is reported (once)
UNSEEN_AFTER = 100


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else repr(value)


class RateFilter(Filter):
    """Add per-second rates of counters that only grow (requests, bytes sent, errors).

    A series is the tag, the field and the values of `group_by` (two workers never mix).
    The first sample of a series gives no rate (there is nothing to compare it with): the
    record passes without the rate field (with `replace: true`, without the counter).
    A counter that goes down was reset: `on_reset: skip` gives no rate for that sample,
    `from_zero` takes the new value as the increase since the reset; never a negative rate.
    A gap longer than `max_gap` restarts the series. Samples whose time does not advance
    give no rate. Values that are not numbers are skipped and counted (`non_numeric`).

    `fields` match top-level keys: a nested record (the uwsgi source's `workers` list) needs
    `flatten` (`workers.*.requests`) or `explode` (`requests`) first. `check` refuses a
    pattern that names a path inside the records that reach it, and a run logs once a field
    that no record had.

    Series survive between runs in `state_dir` (default `$XDG_STATE_HOME/pipeline`, else
    `~/.local/state/pipeline`), so `pipeline run --once` called by td-agent's in_exec every
    10 s gives rates from the second call on.
    """

    stateful = True
    options = (
        Option("fields", ListOf(Str()), help="glob patterns of the counter fields, e.g. workers.*.requests"),
        Option("group_by", ListOf(Str()), [], "fields (dotted paths allowed) that tell series apart"),
        Option("suffix", Str(), "_rate", "the rate of FIELD goes to FIELD + suffix"),
        Option("replace", Bool(), False, "put the rate in the counter's own field instead"),
        Option("per", Duration(min=0.001), 1.0, "rate unit: 1s gives per second, 1m per minute"),
        Option("time_field", Str(), None,
               "take the sample time from this field (RFC 3339 or epoch seconds) instead of the event time"),
        Option("on_reset", Enum("skip", "from_zero"), "skip", "when a counter goes down"),
        Option("max_gap", Duration(min=0.001), None, "a longer gap between samples restarts the series"),
        Option("state_ttl", Duration(min=1), 86400.0, "series unseen this long are forgotten"),
        Option("max_series", Int(min=1), 10000, "most series kept; the longest unseen are evicted"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.tracker = RateTracker(ctx.counters, per=conf.per, on_reset=conf.on_reset, max_gap=conf.max_gap,
                                   max_series=conf.max_series, state_ttl=conf.state_ttl)
        # plain names are looked up; only real globs are matched against every key
        self.names = [f for f in conf.fields if not any(c in f for c in "*?[")]
        self.patterns = [f for f in conf.fields if f not in self.names]
        self._rated: dict[str, bool] = {}
        # which configured fields were seen, until each was or it was said once that one was not
        self._unseen: set[str] | None = set(conf.fields)
        self._records = 0

    @classmethod
    def fields(cls, conf, upstream, check):
        if upstream is None:
            return None
        out = list(upstream.paths)
        for i, pattern in enumerate(conf.fields):
            keys = upstream.top(pattern)
            nested = upstream.nested(pattern)
            if not keys and nested:
                where = ".".join(nested[0]).replace("[*]", "N")
                check.error("fields", f"{pattern!r} names a field inside nested records ({where}), but "
                            "rate matches top-level keys: put a flatten (or explode) filter before it", i)
            out += [(k,) for k in keys] if conf.replace else [(k + conf.suffix,) for k in keys]
        return fields_of(out, upstream.many)

    def _keys(self, record: dict) -> list[str]:
        keys = [k for k in self.names if k in record]
        if self.patterns:
            keys += [k for k in record if k not in keys and self._is_rated(k)]
        return keys

    def _is_rated(self, key: str) -> bool:
        hit = self._rated.get(key)
        if hit is None:
            hit = any(fnmatchcase(key, p) for p in self.patterns)
            if len(self._rated) < 100_000:
                self._rated[key] = hit
        return hit

    def _time(self, record: dict, event_time: int) -> int | None:
        field = self.conf.time_field
        if field is None:
            return event_time
        return time_ns(get_path(record, field))

    def _seen(self, keys: list[str]) -> None:
        unseen = self._unseen
        if unseen is None:
            return
        for key in keys:
            unseen -= {f for f in unseen if fnmatchcase(key, f)}
        self._records += 1
        if not unseen:
            self._unseen = None
        elif self._records >= UNSEEN_AFTER:
            self._report_unseen()

    def _report_unseen(self) -> None:
        if self._unseen:
            self.ctx.log.warning("fields %s matched no field of %d records (rate matches top-level keys: "
                                 "nested records need a flatten or explode filter first)",
                                 ", ".join(sorted(self._unseen)), self._records)
        self._unseen = None

    def flush(self) -> Batch:
        if self._records:
            self._report_unseen()
        return []

    def process(self, batch: Batch) -> Batch:
        conf = self.conf
        update = self.tracker.update
        counters = self.ctx.counters
        out: Batch = []
        for tag, t, record in batch:
            keys = self._keys(record)
            if self._unseen is not None:
                self._seen(keys)
            if not keys:
                out.append((tag, t, record))
                continue
            when = self._time(record, t)
            if when is None:
                # a stopped container's zero time: no rate, and its series stay as they were
                counters["no_sample_time"] += 1
                out.append((tag, t, record))
                continue
            group = tuple(_hashable(get_path(record, g)) for g in conf.group_by)
            new = dict(record)
            for key in keys:
                value = record[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    counters["non_numeric"] += 1
                    continue
                rate = update((tag, key, *group), value, when)
                if conf.replace:
                    if rate is None:
                        del new[key]
                    else:
                        new[key] = rate
                elif rate is not None:
                    new[key + conf.suffix] = rate
            out.append((tag, t, new))
        return out

    def save_state(self) -> Any:
        return self.tracker.save_state()

    def load_state(self, state: Any) -> None:
        self.tracker.load_state(state)


PLUGIN = RateFilter
