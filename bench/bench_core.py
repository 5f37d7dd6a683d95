"""Core benchmark: the Docker stats replay through `stdin -> flatten -> file`, against a
bare loop doing the same work (parse, flatten with the same code, encode, write).

    python bench/bench_core.py [--repeat N]

The issue's target: the pipeline at >= 50% of the bare loop's records/s.
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
    compare("stdin -> flatten -> file (docker stats replay)", [("flat", {"type": "flatten"})], lines, bare_loop,
            args.rounds)


if __name__ == "__main__":
    main()
