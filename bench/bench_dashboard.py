"""What the dashboard's store costs: memory for 100 series of an hour at one point a second
(the issue's bound: 30 MiB), and the time offer() takes per event, which the pipeline pays
on the path of every batch a charted component emits.

    python bench/bench_dashboard.py [--series N] [--seconds N]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.api.series import Store  # noqa: E402


def store(max_series: int, panels: int = 1) -> Store:
    conf = [SimpleNamespace(title=f"p{i}", input="metrics", field="cpu_percent", series="container_name",
                            unit=None) for i in range(panels)]
    return Store(SimpleNamespace(history=3600.0, max_series=max_series, panels=conf))


def batches(series: int, seconds: int, start: float = 1_800_000_000.0):
    names = [f"container-{i}" for i in range(series)]
    for s in range(seconds):
        t = int((start + s) * 1e9)
        yield [("docker.stats", t, {"container_name": n, "cpu_percent": s * 0.5, "memory_usage": 1 << 20})
               for n in names]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--series", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=3600)
    args = ap.parse_args()
    data = list(batches(args.series, args.seconds))
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    s = store(args.series)
    for batch in data:
        s.offer("metrics", batch)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    s = store(args.series)
    began = time.perf_counter()
    for batch in data:
        s.offer("metrics", batch)
    elapsed = time.perf_counter() - began
    events = args.series * args.seconds
    print(f"{args.series} series x {args.seconds} s at 1 s: {used / 2**20:.1f} MiB (bound: 30 MiB)")
    print(f"offer(): {elapsed / events * 1e9:.0f} ns per event per panel ({events / elapsed:,.0f} events/s)")


if __name__ == "__main__":
    main()
