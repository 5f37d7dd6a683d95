"""uWSGI benchmark: the recorded stats replay through `stdin -> explode -> rate -> file`,
against a bare loop doing the same work with the same filter code.

    python bench/bench_uwsgi.py [--repeat N] [--rounds N]
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

EXPLODE = {"field": "stats.workers", "keep": ["ts"]}
RATE = {"fields": ["requests", "tx", "exceptions", "harakiri_count"], "group_by": ["id"], "time_field": "ts"}


def bare_loop(lines: list[bytes], out_path: str) -> float:
    explode = make_plugin("filter", "explode", **EXPLODE)
    rate = make_plugin("filter", "rate", **RATE)
    started = time.perf_counter()
    with open(out_path, "wb") as out:
        for line in lines:
            for _, _, record in rate.process(explode.process([("t", 0, orjson.loads(line))])):
                out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=1, help="replay the 10,000 lines this many times")
    ap.add_argument("--rounds", type=int, default=3, help="measure each side this many times, keep the best")
    args = ap.parse_args()
    lines = replay_lines(FIXTURES / "uwsgi" / "stats-replay.jsonl.gz", args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.jsonl")
        doc = {
            "sources": {"in": {"type": "stdin"}},
            "filters": {"workers": {"type": "explode", "inputs": ["in"], **EXPLODE},
                        "rates": {"type": "rate", "inputs": ["workers"], **RATE}},
            "sinks": {"file": {"type": "file", "inputs": ["rates"], "path": out}},
        }

        def pipeline() -> float:
            if os.path.exists(out):
                os.remove(out)
            return run_graph(doc, lines)

        pipeline_s, bare_s = best_of(args.rounds, pipeline, lambda: bare_loop(lines, os.path.join(tmp, "bare")))
        with open(out, "rb") as f:
            rows = sum(1 for _ in f)
    report(f"stdin -> explode -> rate -> file (uWSGI replay, {rows} worker rows)", len(lines), pipeline_s, bare_s)


if __name__ == "__main__":
    main()
