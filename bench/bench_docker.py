"""Docker benchmark: the 10,000-line Docker stats replay through `stdin -> docker_metrics -> file`,
against a bare loop doing the same work with the same filter code; also the run's wall time
and peak RSS, beside the seed's Node.js program (0.8 s and hundreds of MB for these lines).

    python bench/bench_docker.py [--rounds N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import FIXTURES, bare_loop_of, compare, replay_lines  # noqa: E402
from tests.helpers import make_plugin  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3, help="measure each side this many times, keep the best")
    args = ap.parse_args()
    lines = replay_lines(FIXTURES / "docker" / "stats-replay.jsonl.gz")
    pipeline_s = compare("stdin -> docker_metrics -> file (Docker replay)", [("metrics", {"type": "docker_metrics"})],
                         lines, bare_loop_of(make_plugin("filter", "docker_metrics")), args.rounds)
    print(f"  wall time of one pass through the pipeline: {pipeline_s:.2f} s (seed Node.js program: 0.8 s)")


if __name__ == "__main__":
    main()
