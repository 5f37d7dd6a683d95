"""Core benchmark: the Docker stats replay through `stdin -> flatten -> file`, against a
bare loop doing the same work (parse, flatten with the same code, encode, write).

    python bench/bench_core.py [--repeat N]

The issue's target: the pipeline at >= 50% of the bare loop's records/s.
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
    ap.add_argument("--repeat", type=int, default=3, help="replay the 10,000 lines this many times")
    ap.add_argument("--rounds", type=int, default=3, help="measure each side this many times, keep the best")
    args = ap.parse_args()
    lines = replay_lines(FIXTURES / "docker" / "stats-replay.jsonl.gz", args.repeat)
    compare("stdin -> flatten -> file (docker stats replay)", [("flat", {"type": "flatten"})], lines,
            bare_loop_of(make_plugin("filter", "flatten")), args.rounds)


if __name__ == "__main__":
    main()
