"""Docker benchmark: the 10,000-line Docker stats replay through `stdin -> docker_metrics -> file`,
against a bare loop doing the same work with the same filter code; also the run's wall time
and peak RSS, beside the seed's Node.js program (0.8 s and hundreds of MB for these lines).

    python bench/bench_docker.py [--rounds N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import FIXTURES, compare, replay_lines  # noqa: E402
from tests.helpers import make_plugin  # noqa: E402


def bare_loop(lines: list[bytes], out_path: str) -> float:
    metrics = make_plugin("filter", "docker_metrics")
    started = time.perf_counter()
    with open(out_path, "wb") as out:
        for line in lines:
            for _, _, record in metrics.process([("t", 0, orjson.loads(line))]):
                out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3, help="measure each side this many times, keep the best")
    args = ap.parse_args()
    lines = replay_lines(FIXTURES / "docker" / "stats-replay.jsonl.gz")
    pipeline_s = compare("stdin -> docker_metrics -> file (Docker replay)", [("metrics", {"type": "docker_metrics"})],
                         lines, bare_loop, args.rounds)
    print(f"  wall time of one pass through the pipeline: {pipeline_s:.2f} s (seed Node.js program: 0.8 s)")


if __name__ == "__main__":
    main()
