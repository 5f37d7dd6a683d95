"""Aggregate benchmark: 1,000,000 events of 1,000 groups through the `aggregate` filter with
six metrics (count, sum, avg, min, max, p99), against a bare loop that keeps the same
figures in plain lists (count, sum, min, max and the same log buckets for the percentile).

    python bench/bench_aggregate.py [--events N] [--groups G]

Events come in batches of 1,000 stamped with the wall clock, as a source would give them,
over 1 s windows: windows close and are emitted during the run. Records are drawn from a
pool of 20,000 so that memory measures the filter, not a million held records.

The issue's target: >= 300,000 events/s, peak RSS <= 50 MiB.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import best_of, peak_rss_mib, report  # noqa: E402
from tests.helpers import make_plugin  # noqa: E402

BATCH = 1000
METRICS = {"requests": "count()", "bytes": "sum(bytes)", "rt_avg": "avg(rt)",
           "rt_min": "min(rt)", "rt_max": "max(rt)", "rt_p99": "p99(rt)"}


def records(groups: int, pool: int = 20_000) -> list[dict]:
    rng = random.Random(1)
    return [{"host": f"web-{rng.randrange(groups):04d}", "rt": rng.lognormvariate(-3, 1),
             "bytes": rng.randrange(200, 20_000), "path": "/api/v1/items"} for _ in range(pool)]


def batches(pool: list[dict], events: int):
    for i in range(0, events, BATCH):
        now = time.time_ns()
        start = i % len(pool)
        yield [("web", now, r) for r in pool[start:start + BATCH]]


def run_filter(pool: list[dict], events: int) -> float:
    f = make_plugin("filter", "aggregate", window="1s", group_by=["host"], metrics=METRICS, flush_on_stop=True)
    started = time.perf_counter()
    emitted = 0
    for batch in batches(pool, events):
        emitted += len(f.process(batch))
    emitted += len(f.flush())
    elapsed = time.perf_counter() - started
    assert emitted, "no window was emitted"
    return elapsed


def run_bare(pool: list[dict], events: int) -> float:
    inv = 1 / math.log(1.01 / 0.99)
    windows: dict[int, dict[str, list]] = {}
    started = time.perf_counter()
    for batch in batches(pool, events):
        for _, t, r in batch:
            win = windows.setdefault(t - t % 1_000_000_000, {})
            g = win.get(r["host"])
            if g is None:
                g = win[r["host"]] = [0, 0, 0.0, math.inf, -math.inf, {}]
            rt = r["rt"]
            g[0] += 1
            g[1] += r["bytes"]
            g[2] += rt
            if rt < g[3]:
                g[3] = rt
            if rt > g[4]:
                g[4] = rt
            k = math.ceil(math.log(rt) * inv)
            g[5][k] = g[5].get(k, 0) + 1
    elapsed = time.perf_counter() - started
    assert windows
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="measure each side this many times, keep the best")
    args = ap.parse_args()
    pool = records(args.groups)
    filter_s, bare_s = best_of(args.rounds, lambda: run_filter(pool, args.events),
                               lambda: run_bare(pool, args.events))
    report(f"aggregate: {args.groups} groups, 6 metrics (count, sum, avg, min, max, p99), 1 s windows",
           args.events, filter_s, bare_s)
    print(f"  target     >= 300,000 events/s and <= 50 MiB: "
          f"{'met' if args.events / filter_s >= 300_000 and peak_rss_mib() <= 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
