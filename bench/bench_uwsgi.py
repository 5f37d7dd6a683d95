"""uWSGI benchmark: the recorded stats replay through `stdin -> explode -> rate -> file`,
against a bare loop doing the same work with the same filter code.

    python bench/bench_uwsgi.py [--repeat N] [--rounds N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import FIXTURES, bare_loop_of, compare, replay_lines  # noqa: E402
from tests.helpers import make_plugin  # noqa: E402

EXPLODE = {"field": "stats.workers", "keep": ["ts"]}
RATE = {"fields": ["requests", "tx", "exceptions", "harakiri_count"], "group_by": ["id"], "time_field": "ts"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=1, help="replay the 10,000 lines this many times")
    ap.add_argument("--rounds", type=int, default=3, help="measure each side this many times, keep the best")
    args = ap.parse_args()
    lines = replay_lines(FIXTURES / "uwsgi" / "stats-replay.jsonl.gz", args.repeat)
    compare("stdin -> explode -> rate -> file (uWSGI replay, 4 worker rows per line)",
            [("workers", {"type": "explode", **EXPLODE}), ("rates", {"type": "rate", **RATE})],
            lines, bare_loop_of(make_plugin("filter", "explode", **EXPLODE), make_plugin("filter", "rate", **RATE)),
            args.rounds)


if __name__ == "__main__":
    main()
