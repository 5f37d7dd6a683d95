"""Percentiles with a relative error bound: a DDSketch (Masson, Rim and Lee, VLDB 2019).

Why this sketch: a window's percentile must come from bounded memory (a minute of a busy
tag is millions of values), survive a `--once` run in a state file, and mean the same for
every distribution. A DDSketch guarantees, for every quantile, a value within `accuracy`
of the true one *relative to it* (1% of a 3 ms latency is 30 us, of 3 s is 30 ms), holds
one counter per logarithmic bucket (about 460 for values spanning 1 ms to 10 s at 1%),
and two sketches merge by adding counters. A t-digest bounds the error in rank, not in
value, with no hard guarantee in the tails where p99 lives; keeping the exact values
costs memory in proportion to the events.

A value x > 0 goes to bucket k = ceil(log_gamma(x)) with gamma = (1 + a) / (1 - a), so
gamma^(k-1) < x <= gamma^k; the bucket's estimate 2 gamma^k / (gamma + 1) is within a*x of
every value in it. Negative values go to buckets of -x of their own; values within 1e-9
of zero are counted as zero. The quantile q is the value of rank floor(q * (n - 1)) in
sorted order (0 the smallest, 1 the largest), within `accuracy` of it.

Memory is capped at `max_bins` buckets per sign, by default the number that spans 20
decades (2,303 at 1%, 23,026 at 0.1%): past that, the lowest buckets are merged into one,
so only quantiles that fall in the merged buckets (the smallest values) lose the guarantee.
The cap is for garbage, not data: 1 us to 1 day is 11 decades.
"""

from __future__ import annotations

import math
from typing import Any

#: values this close to zero are counted as zero (log of them would need endless buckets)
MIN_VALUE = 1e-9
#: by default a sketch keeps the buckets of 20 decades (the largest / the smallest kept)
DECADES = 20


class Mapping:
    """The parameters a family of sketches shares (one per metric, not one per window)."""

    __slots__ = ("accuracy", "gamma", "inv_log_gamma", "max_bins")

    def __init__(self, accuracy: float = 0.01, max_bins: int | None = None):
        if not 0 < accuracy < 1:
            raise ValueError("accuracy must be between 0 and 1")
        self.accuracy = accuracy
        self.gamma = (1 + accuracy) / (1 - accuracy)
        self.inv_log_gamma = 1 / math.log(self.gamma)
        self.max_bins = max_bins or math.ceil(DECADES * math.log(10) * self.inv_log_gamma)

    def value(self, k: int) -> float:
        return 2 * self.gamma ** k / (self.gamma + 1)


class Sketch:
    __slots__ = ("m", "pos", "neg", "zero", "count")

    def __init__(self, mapping: Mapping):
        self.m = mapping
        self.pos: dict[int, int] = {}
        self.neg: dict[int, int] = {}
        self.zero = 0
        self.count = 0

    def add_many(self, values: list[int | float]) -> None:
        """Add finite numbers."""
        inv = self.m.inv_log_gamma
        log, ceil = math.log, math.ceil
        pos, neg = self.pos, self.neg
        for x in values:
            if x > MIN_VALUE:
                k = ceil(log(x) * inv)
                pos[k] = pos.get(k, 0) + 1
            elif x < -MIN_VALUE:
                k = ceil(log(-x) * inv)
                neg[k] = neg.get(k, 0) + 1
            else:
                self.zero += 1
        self.count += len(values)
        for bins in (pos, neg):
            if len(bins) > self.m.max_bins:
                self._collapse(bins)

    def _collapse(self, bins: dict[int, int]) -> None:
        keys = sorted(bins)
        extra = keys[: len(keys) - self.m.max_bins + 1]
        bins[keys[len(extra)]] += sum(bins.pop(k) for k in extra)

    def merge(self, other: Sketch) -> None:
        for mine, theirs in ((self.pos, other.pos), (self.neg, other.neg)):
            for k, n in theirs.items():
                mine[k] = mine.get(k, 0) + n
            if len(mine) > self.m.max_bins:
                self._collapse(mine)
        self.zero += other.zero
        self.count += other.count

    def quantile(self, q: float) -> float | None:
        """The value of rank floor(q * (count - 1)), q in [0, 1]; None when empty."""
        if not self.count:
            return None
        rank = math.floor(q * (self.count - 1))
        seen = 0
        for k in sorted(self.neg, reverse=True):
            seen += self.neg[k]
            if seen > rank:
                return -self.m.value(k)
        seen += self.zero
        if seen > rank:
            return 0.0
        keys = sorted(self.pos)
        for k in keys[:-1]:
            seen += self.pos[k]
            if seen > rank:
                return self.m.value(k)
        return self.m.value(keys[-1])

    def to_state(self) -> list[Any]:
        return [self.zero, self.count, [x for kv in self.pos.items() for x in kv],
                [x for kv in self.neg.items() for x in kv]]

    @classmethod
    def from_state(cls, mapping: Mapping, state: list[Any]) -> Sketch:
        s = cls(mapping)
        s.zero, s.count, pos, neg = state
        s.pos = dict(zip(pos[::2], pos[1::2]))
        s.neg = dict(zip(neg[::2], neg[1::2]))
        return s
