"""The dashboard's series: what the charted components emit, kept in memory, bounded.

A Store is put among the runtime's taps of each panel's input, so it gets every batch those
components emit, synchronously, on the path that already exists for `pipeline tap` (no
await, nothing reaches into a plugin). Per event it reads two fields and appends two
doubles to arrays.

Bounds: a series keeps at most one point per `step` (each whole second; a later value in the
same second replaces the earlier), and nothing older than `history`; a panel keeps at most
`max_series` series, and the points of more are dropped and counted. A series with no
point left in `history` is forgotten, which makes room for a new container or worker.
So 100 series of an hour cost 100 x 3,600 x 16 bytes, plus the arrays' slack.
"""

from __future__ import annotations

import logging
import time
from array import array
from bisect import bisect_left
from types import SimpleNamespace
from typing import Any

from ..config.dashboard import guess_unit
from ..event import Batch, get_path

log = logging.getLogger("pipeline.api")

#: one point per series per step: the charts redraw each second, finer is not seen
STEP = 1.0
#: how often series that stopped are looked at, to forget those with nothing left
PRUNE_EVERY = 10.0


class Series:
    __slots__ = ("times", "values")

    def __init__(self) -> None:
        self.times = array("d")
        self.values = array("d")

    def add(self, t: float, v: float, step: float, history: float) -> bool:
        """False for a point older than the last one (not charted)."""
        times = self.times
        # steps are whole multiples, as the sources' polls are aligned to the clock: polls a
        # step apart never share one, however late each one's records come
        if times and t // step <= times[-1] // step:
            if t < times[-1]:
                return False
            self.values[-1] = v  # the point keeps its first time, so a fast source still moves on
            return True
        times.append(t)
        self.values.append(v)
        self.trim(t - history)
        return True

    def trim(self, cutoff: float) -> None:
        times = self.times
        if times and times[0] < cutoff:
            k = bisect_left(times, cutoff)
            del times[:k]
            del self.values[:k]

    def since(self, t: float) -> dict[str, list[float]]:
        k = bisect_left(self.times, t)
        return {"t": [round(x, 3) for x in self.times[k:]], "v": self.values[k:].tolist()}


class Panel:
    def __init__(self, index: int, conf: SimpleNamespace, max_series: int):
        self.index = index
        self.title = conf.title
        self.input = conf.input
        self.field = conf.field
        self.series_field = conf.series
        self.unit = conf.unit or guess_unit(conf.field)
        self.max_series = max_series
        self.series: dict[str, Series] = {}
        #: points of series past max_series, and of events older than their series' last point
        self.dropped = 0
        self.late = 0
        self.seen = False
        self._told = False

    def add(self, batch: Batch, step: float, history: float) -> None:
        field, key, series = self.field, self.series_field, self.series
        for _tag, t, record in batch:
            v = get_path(record, field)
            if type(v) is not float and type(v) is not int:  # bool is no number here
                continue
            self.seen = True
            name = self.field if key is None else str(get_path(record, key))
            s = series.get(name)
            if s is None:
                if len(series) >= self.max_series:
                    self.dropped += 1
                    if not self._told:
                        self._told = True
                        log.warning("dashboard panel %d (%s): more than max_series %d series; "
                                    "the points of the others are dropped (first: %r)",
                                    self.index, self.title, self.max_series, name)
                    continue
                s = series[name] = Series()
            if not s.add(t / 1e9, float(v), step, history):
                self.late += 1

    def prune(self, cutoff: float) -> None:
        for name in list(self.series):
            s = self.series[name]
            s.trim(cutoff)
            if not s.times:
                del self.series[name]

    def doc(self, since: float) -> dict[str, Any]:
        return {"index": self.index, "title": self.title, "input": self.input, "field": self.field,
                "series_field": self.series_field, "unit": self.unit,
                "dropped_points": self.dropped, "late_points": self.late,
                "series": [{"name": name, **s.since(since)} for name, s in sorted(self.series.items())]}


class Store:
    """What a runtime's taps hold for the dashboard: offer() and close() as a Tap has."""

    def __init__(self, conf: SimpleNamespace, step: float = STEP):
        self.history = conf.history
        self.step = step
        self.panels = [Panel(i, p, conf.max_series) for i, p in enumerate(conf.panels)]
        self.by_input: dict[str, list[Panel]] = {}
        for panel in self.panels:
            self.by_input.setdefault(panel.input, []).append(panel)
        self._pruned = time.monotonic()

    def offer(self, producer: str, batch: Batch) -> None:
        for panel in self.by_input.get(producer, ()):
            panel.add(batch, self.step, self.history)
        now = time.monotonic()
        if now - self._pruned >= PRUNE_EVERY:
            self._pruned = now
            cutoff = time.time() - self.history
            for panel in self.panels:
                panel.prune(cutoff)

    def close(self) -> None:
        """The api stops: nothing to send (a Tap sends what it holds)."""
