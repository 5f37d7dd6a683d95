"""The metrics of the `aggregate` filter: expressions, field paths and accumulators.

An expression `func(field)` is parsed once, when the config is checked. Metrics over the
same field share one accumulator (avg, sum and max of `rt` read `rt` once an event), so
a window's group holds one small object per field, whatever the number of metrics.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from ..config.options import Invalid, Type, _did_you_mean
from .sketch import Mapping, Sketch

SCALARS = frozenset((str, int, float, bool, type(None)))
NUMERIC = ("sum", "avg", "min", "max", "stddev", "percentile")
FUNCTIONS = ("count", *NUMERIC[:5], "first", "last", "count_distinct", "percentile")
_CALL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)\s*$")
_PNN = re.compile(r"^p(\d\d)(\d*)$")
_SEGMENT = re.compile(r"^(?:\$\d+|[^\s$(),]+)$")


def parse_path(text: str) -> str:
    """A field: `rt`, a dotted path `workers.0.avg_rt`, or Norikra's `workers.$0.avg_rt`
    ($N: the Nth element of an array)."""
    if not text:
        raise Invalid("expected a field name")
    for part in text.split("."):
        if not _SEGMENT.match(part):
            raise Invalid(f"bad field {text!r}: {part!r} is not a key or $N (an array index)"
                          if part else f"bad field {text!r}: empty part in a dotted path")
    return text


def getter(path: str) -> Callable[[dict], Any]:
    """`record -> value or None` for a field path. A flattened record holds the dotted key
    itself (`workers.0.avg_rt`), so that is looked up first."""
    if "." not in path:
        return lambda r: r.get(path)
    steps = [int(p[1:]) if p[0] == "$" else p for p in path.split(".")]
    flat = ".".join(str(s) for s in steps)

    def get(record: dict) -> Any:
        value: Any = record.get(flat)
        if value is not None:
            return value
        value = record
        for step in steps:
            if isinstance(value, dict):
                value = value.get(str(step))
            elif isinstance(value, list) and (isinstance(step, int) or step.isdigit()):
                i = int(step)
                value = value[i] if i < len(value) else None
            else:
                return None
        return value
    return get


def hashable(value: Any) -> Any:
    return value if value.__class__ in SCALARS else repr(value)


class Metric(NamedTuple):
    func: str
    field: str | None
    q: float | None  # percentile, 0..1
    text: str

    def __str__(self) -> str:
        return self.text


class MetricExpr(Type):
    """`func(field)`: one of FUNCTIONS, `pNN` (p50, p99, p999) or `percentile(field, q)`."""

    name = "expression"

    def convert(self, value, path, errors, node):
        if not isinstance(value, str):
            raise Invalid("expected an expression like avg(field) or p99(field)")
        m = _CALL.match(value)
        if not m:
            raise Invalid(f"expected func(field), got {value!r}")
        func, args = m.group(1), [a.strip() for a in m.group(2).split(",")] if m.group(2).strip() else []
        q = None
        pnn = _PNN.match(func)
        if pnn:
            q = float(f"{pnn.group(1)}.{pnn.group(2) or 0}") / 100
            func = "percentile"
            if not 0 < q < 1:
                raise Invalid(f"{m.group(1)}: a percentile is between p01 and p99999")
        elif func == "percentile":
            if len(args) != 2:
                raise Invalid("percentile takes a field and a percent: percentile(rt, 99.9)")
            try:
                q = float(args.pop()) / 100
            except ValueError:
                raise Invalid(f"percentile: {args[-1]!r} is not a number") from None
            if not 0 <= q <= 1:
                raise Invalid("percentile: the percent is between 0 and 100")
        elif func not in FUNCTIONS:
            hint = _did_you_mean(func, [*FUNCTIONS, "p50", "p99"])
            raise Invalid(f"unknown function {func!r}{hint}; functions: {', '.join(FUNCTIONS)}, pNN")
        if func == "count" and not args:
            return Metric(func, None, None, value)
        if len(args) != 1:
            raise Invalid(f"{m.group(1)} takes one field, got {len(args)} arguments")
        return Metric(func, parse_path(args[0]), q, value)


class FieldPath(Type):
    name = "field"

    def convert(self, value, path, errors, node):
        if not isinstance(value, str):
            raise Invalid("expected a field name")
        return parse_path(value)


# ---- accumulators. Events append their values to a group's pending lists (one append
# per field and event: the benchmark's 1,000 groups see about one event per batch each, so
# per-event method calls were most of the cost); add_many() takes them in bulk.

def numbers(values: list[Any]) -> list[int | float]:
    """The finite numbers among `values` (no bool, str, None, inf or nan)."""
    return [v for v in values if v.__class__ is int or (v.__class__ is float and v - v == 0)]


def not_numbers(values: list[Any]) -> list[Any]:
    return [v for v in values if not (v.__class__ is int or (v.__class__ is float and v - v == 0))]


#: the largest float: a sum must stay within it, or it cannot be written as a number
FLOAT_MAX = sys.float_info.max
#: past this magnitude a deviation's square could overflow: stddev's moments are then kept
#: in units of a power of two above every value (exact: only the exponent changes)
SCALE_FROM = 2.0 ** 400
#: integers msgpack holds (a file buffer, a forward sink); a sum past them is given as a float
INT_MIN, INT_MAX = -(2 ** 63), 2 ** 64 - 1


class Num:
    """Numbers of one field: count, sum, min, max; mean and M2 for stddev, merged chunk by
    chunk (Chan et al.; a sum of squares loses all precision on RSS-sized values); a sketch
    for percentiles.

    Overflow: a value that would take the sum past the largest float (1e308 after 1e308,
    an integer of 400 digits) cannot be summed: it is skipped, for every metric of its field,
    and counted as non-numeric, as a string is. Integers are summed exactly. The moments are
    scaled by a power of two once a value passes 2**400 (1.0, 1e200, 3 have a stddev, not an
    overflow), and a chunk's mean is taken of the scaled values, so fsum cannot overflow."""

    __slots__ = ("n", "total", "lo", "hi", "mean", "m2", "sketch", "var", "scale")

    def __init__(self, var: bool, mapping: Mapping | None):
        self.n = 0
        self.total: int | float = 0
        self.lo: float = math.inf
        self.hi: float = -math.inf
        #: mean and M2 are of the values divided by `scale`
        self.mean = 0.0
        self.m2 = 0.0
        self.scale = 1.0
        self.var = var
        self.sketch = Sketch(mapping) if mapping is not None else None

    def add_many(self, values: list[Any], times: list[int] | None) -> list[Any]:
        """Take the numbers of `values`; return the values skipped."""
        nums = numbers(values)
        if not nums:
            return values
        skipped = not_numbers(values) if len(nums) < len(values) else []
        try:
            total = self.total + sum(nums)
        except OverflowError:  # an integer past the floats beside a float
            total = math.inf
        if not -FLOAT_MAX <= total <= FLOAT_MAX:
            nums, total = self._summable(nums, skipped)
            if not nums:
                return skipped
        n = len(nums)
        self.total = total
        lo, hi = min(nums), max(nums)
        self.lo = min(self.lo, lo)
        self.hi = max(self.hi, hi)
        if self.var:
            self._moments(nums, max(-lo, hi))
        self.n += n
        if self.sketch is not None:
            self.sketch.add_many(nums)
        return skipped

    def _summable(self, nums: list[int | float], skipped: list[Any]) -> tuple[list[int | float], int | float]:
        """The values the sum can take in turn, and the sum; the others go to `skipped`."""
        kept = []
        total = self.total
        for x in nums:
            try:
                t = total + x
            except OverflowError:
                t = math.inf
            if -FLOAT_MAX <= t <= FLOAT_MAX:
                kept.append(x)
                total = t
            else:
                skipped.append(x)
        return kept, total

    def _moments(self, nums: list[int | float], big: float) -> None:
        scale = self.scale
        if big >= SCALE_FROM and big >= scale:
            # the power of two just above `big`, or the largest there is: scaled values stay below 2
            new = math.ldexp(1.0, min(math.frexp(big)[1], 1023))
            ratio = scale / new
            self.mean *= ratio
            self.m2 *= ratio * ratio
            self.scale = scale = new
        if scale != 1.0:
            inv = 1.0 / scale
            nums = [x * inv for x in nums]
        n = len(nums)
        mean = math.fsum(nums) / n
        m2 = math.fsum((x - mean) ** 2 for x in nums)
        total = self.n + n
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.n * n / total
        self.mean += delta * n / total

    def result(self, metric: Metric) -> Any:
        f = metric.func
        if f == "sum":
            return _packable(self.total)
        if f == "count":
            return self.n
        if not self.n:
            return None
        if f == "avg":
            return self.total / self.n
        if f == "min":
            return self.lo
        if f == "max":
            return self.hi
        if f == "stddev":  # the sample's, as Esper (Norikra) gives it
            return math.sqrt(self.m2 / (self.n - 1)) * self.scale if self.n > 1 else None
        # the exact min and max are at hand: the extreme ranks are exact, and no estimate
        # lies outside them
        rank = math.floor(metric.q * (self.n - 1))  # type: ignore[operator]
        if rank == 0 or rank == self.n - 1:
            return self.lo if rank == 0 else self.hi
        estimate = self.sketch.quantile(metric.q)  # type: ignore[union-attr, arg-type]
        return min(max(estimate, self.lo), self.hi)  # type: ignore[type-var]

    def to_state(self) -> list[Any]:
        return [self.n, _packable(self.total), self.lo, self.hi, self.mean, self.m2,
                self.sketch.to_state() if self.sketch is not None else None, self.scale]

    def load(self, state: list[Any]) -> None:
        # the scale came later: a state saved before it is of scale 1
        self.n, self.total, self.lo, self.hi, self.mean, self.m2, sketch, *scale = state
        self.scale = float(scale[0]) if scale else 1.0
        if self.sketch is not None:
            self.sketch = Sketch.from_state(self.sketch.m, sketch)


def _packable(total: int | float) -> int | float:
    """An exact integer sum past what msgpack holds is given as a float."""
    return total if type(total) is float or INT_MIN <= total <= INT_MAX else float(total)


class Values:
    """Values of any type: how many, the first and the last by event time."""

    __slots__ = ("n", "first", "first_t", "last", "last_t")

    def __init__(self) -> None:
        self.n = 0
        self.first: Any = None
        self.last: Any = None
        self.first_t = self.last_t = 0

    def add_many(self, values: list[Any], times: list[int] | None) -> list[Any]:
        for v, t in zip(values, times):  # type: ignore[arg-type]
            if v is None:
                continue
            if not self.n or t < self.first_t:
                self.first, self.first_t = v, t
            if not self.n or t >= self.last_t:
                self.last, self.last_t = v, t
            self.n += 1
        return [None] * values.count(None)

    def result(self, metric: Metric) -> Any:
        return self.n if metric.func == "count" else getattr(self, metric.func)

    def to_state(self) -> list[Any]:
        return [self.n, self.first, self.first_t, self.last, self.last_t]

    def load(self, state: list[Any]) -> None:
        self.n, self.first, self.first_t, self.last, self.last_t = state


class Distinct:
    """Distinct values, exact up to `limit` (then new ones are counted, not kept)."""

    __slots__ = ("values", "limit", "overflow")

    def __init__(self, limit: int):
        self.values: set[Any] = set()
        self.limit = limit
        self.overflow = 0

    def add_many(self, values: list[Any], times: list[int] | None) -> list[Any]:
        seen = self.values
        for v in values:
            if v is None:
                continue
            v = hashable(v)
            if len(seen) < self.limit or v in seen:
                seen.add(v)
            else:
                self.overflow += 1
        return [None] * values.count(None)

    def result(self, metric: Metric) -> Any:
        return len(self.values)

    def to_state(self) -> list[Any]:
        return [list(self.values), self.overflow]

    def load(self, state: list[Any]) -> None:
        values, self.overflow = state
        self.values = set(values)


def kind_of(metric: Metric) -> str:
    """Which accumulator a metric reads: numbers, any values, or distinct values."""
    if metric.func in NUMERIC:
        return "num"
    return "distinct" if metric.func == "count_distinct" else "any"
