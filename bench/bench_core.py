"""Core benchmark: the Docker stats replay through `stdin -> flatten -> file`, against a
bare loop doing the same work (parse, flatten with the same code, encode, write).

    python bench/bench_core.py [--repeat N]

The issue's target: the pipeline at >= 50% of the bare loop's records/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import FIXTURES, best_of, replay_lines, report, run_graph  # noqa: E402
from tests.helpers import make_plugin  # noqa: E402


def bare_loop(lines: list[bytes], out_path: str) -> float:
    flatten = make_plugin("filter", "flatten").flatten  # type: ignore[attr-defined]
    started = time.perf_counter()
    with open(out_path, "wb") as out:
        for line in lines:
            out.write(orjson.dumps(flatten(orjson.loads(line)), option=orjson.OPT_APPEND_NEWLINE))
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3, help="replay the 10,000 lines this many times")
    ap.add_argument("--rounds", type=int, default=3, help="measure each side this many times, keep the best")
    args = ap.parse_args()
    lines = replay_lines(FIXTURES / "docker" / "stats-replay.jsonl.gz", args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.jsonl")
        doc = {
            "sources": {"in": {"type": "stdin", "format": "json_lines"}},
            "filters": {"flat": {"type": "flatten", "inputs": ["in"]}},
            "sinks": {"file": {"type": "file", "inputs": ["flat"], "path": out}},
        }

        def pipeline() -> float:
            if os.path.exists(out):
                os.remove(out)
            elapsed = run_graph(doc, lines)
            with open(out, "rb") as f:
                written = sum(1 for _ in f)
            assert written == len(lines), (written, len(lines))
            return elapsed

        pipeline_s, bare_s = best_of(args.rounds, pipeline, lambda: bare_loop(lines, os.path.join(tmp, "bare")))
    report("stdin -> flatten -> file (docker stats replay)", len(lines), pipeline_s, bare_s)


if __name__ == "__main__":
    main()
