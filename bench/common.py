"""What the benchmarks share: replay files, an in-process pipeline run, peak RSS."""

from __future__ import annotations

import asyncio
import gzip
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from pipeline.config.graph import build_graph
from pipeline.config.options import Errors
from pipeline.engine.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def replay_lines(path: Path, repeat: int = 1) -> list[bytes]:
    with gzip.open(path, "rb") as f:
        lines = [line for line in f.read().split(b"\n") if line.strip()]
    return lines * repeat


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_graph(doc: dict[str, Any], stdin_lines: list[bytes] | None = None) -> float:
    """Run a config (as a dict) with --once semantics, stdin fed from `stdin_lines` (None: the
    config reads no stdin); return the wall time of the run."""
    if stdin_lines is None:
        return _timed_run(doc)
    with tempfile.TemporaryFile() as data:
        data.write(b"\n".join(stdin_lines) + b"\n")
        data.seek(0)
        saved = sys.stdin
        sys.stdin = open(data.fileno(), closefd=False)  # noqa: SIM115 - restored below
        try:
            return _timed_run(doc)
        finally:
            sys.stdin = saved


def _timed_run(doc: dict[str, Any]) -> float:
    graph = build_graph(doc, Errors(file="<bench>"))
    started = time.perf_counter()
    status = asyncio.run(Runtime(graph, once=True).run())
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"pipeline run failed with status {status}")
    return elapsed


def best_of(rounds: int, *runs: Callable[[], float]) -> list[float]:
    """Run each measurement `rounds` times, alternating, and keep each one's best time:
    alternating spreads the machine's other load over both sides."""
    best = [float("inf")] * len(runs)
    for _ in range(rounds):
        for i, run in enumerate(runs):
            best[i] = min(best[i], run())
    return best


def bare_loop_of(*filters: Any) -> Callable[[list[bytes], str], float]:
    """The floor: parse each line, run it through the same filter objects, encode, write."""
    def run(lines: list[bytes], out_path: str) -> float:
        started = time.perf_counter()
        with open(out_path, "wb") as out:
            for line in lines:
                batch = [("t", 0, orjson.loads(line))]
                for f in filters:
                    batch = f.process(batch)
                for _, _, record in batch:
                    out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        return time.perf_counter() - started
    return run


def compare(name: str, filters: list[tuple[str, dict[str, Any]]], lines: list[bytes],
            bare_loop: Callable[[list[bytes], str], float], rounds: int) -> float:
    """`stdin -> filters (a chain) -> file` against `bare_loop`, best of `rounds` each;
    prints the report and returns the pipeline's best time."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.jsonl")
        doc: dict[str, Any] = {"sources": {"in": {"type": "stdin"}}, "filters": {}}
        previous = "in"
        for fid, conf in filters:
            doc["filters"][fid] = {**conf, "inputs": [previous]}
            previous = fid
        doc["sinks"] = {"file": {"type": "file", "inputs": [previous], "path": out}}

        def pipeline() -> float:
            if os.path.exists(out):
                os.remove(out)
            return run_graph(doc, lines)

        pipeline_s, bare_s = best_of(rounds, pipeline, lambda: bare_loop(lines, os.path.join(tmp, "bare")))
    report(name, len(lines), pipeline_s, bare_s)
    return pipeline_s


def report(name: str, n: int, pipeline_s: float, bare_s: float) -> None:
    p, b = n / pipeline_s, n / bare_s
    print(f"{name}: {n} records")
    print(f"  pipeline   {p:>12,.0f} records/s  ({pipeline_s:.3f} s)")
    print(f"  bare loop  {b:>12,.0f} records/s  ({bare_s:.3f} s)")
    print(f"  ratio      {p / b:.0%} of the bare loop")
    print(f"  peak RSS   {peak_rss_mib():.0f} MiB (whole bench process)")
