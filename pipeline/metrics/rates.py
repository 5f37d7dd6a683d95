"""Per-second rates of cumulative counters, shared by the rate and docker_metrics filters.

A series is one counter of one thing (tag + field + group values). Its state is
the last (value, time); a rate needs two samples, so the first sample of a
series gives none. A counter that goes down was reset (a worker respawned, a
container restarted): no negative rate is ever emitted. State is bounded by
`max_series` and can be saved between `--once` runs.
"""

from __future__ import annotations

import calendar
import re
import time
from collections import Counter
from typing import Any

Key = tuple[Any, ...]

_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9})\d*)?(Z|z|[+-]\d\d:?\d\d)?$")


def parse_rfc3339_ns(text: str) -> int | None:
    """RFC 3339 (0 to 9 fractional digits, `Z` or an offset) to ns since the epoch.
    None for what is not a time, and for Docker's zero time `0001-01-01T00:00:00Z`
    (a stopped container's sample)."""
    m = _RFC3339.match(text)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if year <= 1:
        return None
    try:
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    zone = m.group(8)
    if zone and zone not in "Zz":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    fraction = m.group(7) or ""
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0") or 0)


def time_ns(value: object) -> int | None:
    """A record's own time (RFC 3339 text or epoch seconds) in ns; None for what is not one."""
    if isinstance(value, str):
        return parse_rfc3339_ns(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        # to the us, as epoch seconds in a float hold no finer: * 1e9 at once turned 0.25 s
        # into 0.249999872
        return round(value * 1e6) * 1000
    return None


class RateTracker:
    """Last sample per series, and the rate since it."""

    def __init__(self, counters: Counter[str], *, per: float = 1.0, on_reset: str = "skip",
                 max_gap: float | None = None, max_series: int = 10000, state_ttl: float = 86400.0):
        #: what happened to series (gaps, resets, evictions): the component's counters
        self.counters = counters
        self.per = per
        self.from_zero = on_reset == "from_zero"
        self.max_gap_ns = int(max_gap * 1e9) if max_gap else None
        self.max_series = max_series
        self.state_ttl_ns = int(state_ttl * 1e9)
        # insertion order is update order: the first entry is the longest unseen series
        self.series: dict[Key, tuple[int | float, int]] = {}

    def update(self, key: Key, value: int | float, time_ns: int) -> float | None:
        """The rate per `per` seconds since the series' previous sample, or None: first
        sample, a reset (on_reset: skip), a gap longer than max_gap, or time not advancing."""
        series = self.series
        prev = series.pop(key, None)
        if prev is not None and time_ns <= prev[1]:
            # a repeated or older sample: keep the newer one, no rate
            series[key] = prev
            self.counters["time_not_advancing"] += 1
            return None
        series[key] = (value, time_ns)
        if prev is None:
            if len(series) > self.max_series:
                del series[next(iter(series))]
                self.counters["series_evicted"] += 1
            return None
        dt = time_ns - prev[1]
        if self.max_gap_ns is not None and dt > self.max_gap_ns:
            self.counters["gaps"] += 1
            return None
        delta = value - prev[0]
        if delta < 0:
            self.counters["resets"] += 1
            if not self.from_zero:
                return None
            delta = value
        return delta * self.per * 1e9 / dt

    def forget(self, key: Key) -> None:
        self.series.pop(key, None)

    def save_state(self) -> dict[str, Any]:
        cutoff = time.time_ns() - self.state_ttl_ns
        return {"version": 1,
                "series": [[list(k), v, t] for k, (v, t) in self.series.items() if t >= cutoff]}

    def load_state(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("version") != 1:
            return
        cutoff = time.time_ns() - self.state_ttl_ns
        loaded = 0
        for entry in state.get("series", ()):
            try:
                key, value, t = entry
                if t >= cutoff:
                    self.series[tuple(key)] = (value, t)
                    loaded += 1
            except (TypeError, ValueError):
                continue
        self.counters["series_expired"] += len(state.get("series", ())) - loaded
        while len(self.series) > self.max_series:
            del self.series[next(iter(self.series))]
            self.counters["series_evicted"] += 1
