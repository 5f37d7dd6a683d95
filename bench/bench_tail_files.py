"""Many small files: `tail (--once, read_from_head) -> file` over N files of 3 lines each,
against a bare loop that opens, reads and writes each file's lines as JSON in the same
process. Finding files was quadratic (each new file's head compared with every followed file's):
500 files took 1 s, 2,000 9.5 s, 10,000 shipped nothing in 180 s. The ratio to the bare loop
should stay about the same as N grows.

    python bench/bench_tail_files.py [--files 500,1000,2000,10000] [--max-open-files N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import run_graph  # noqa: E402


def bare_loop(directory: str, out_path: str) -> float:
    dumps, nl = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    started = time.perf_counter()
    with open(out_path, "wb") as out:
        for name in sorted(os.listdir(directory)):
            with open(os.path.join(directory, name), "rb") as f:
                for line in f.read().decode().split("\n")[:-1]:
                    out.write(dumps({"message": line}, option=nl))
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", default="500,1000,2000,10000")
    ap.add_argument("--max-open-files", type=int, default=None)
    args = ap.parse_args()
    print(f"tail --once over N files of 3 lines, load average {os.getloadavg()[0]:.2f}")
    for n in (int(x) for x in args.files.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            logs = os.path.join(tmp, "logs")
            os.mkdir(logs)
            for i in range(n):
                with open(os.path.join(logs, f"{i:05d}.log"), "w") as f:
                    f.write(f"{i} a\n{i} b\n{i} c\n")
            out, state = os.path.join(tmp, "out.jsonl"), os.path.join(tmp, "state")
            source = {"type": "tail", "path": f"{logs}/*.log", "read_from_head": True}
            if args.max_open_files:
                source["max_open_files"] = args.max_open_files
            doc = {"state_dir": state, "sources": {"in": source},
                   "sinks": {"file": {"type": "file", "inputs": ["in"], "path": out}}}
            pipeline_s = run_graph(doc)
            with open(out, "rb") as f:
                written = sum(1 for _ in f)
            assert written == 3 * n, f"the pipeline wrote {written} records of {3 * n}"
            shutil.rmtree(state)
            bare_s = bare_loop(logs, os.path.join(tmp, "bare"))
        print(f"  {n:>6} files  pipeline {pipeline_s:7.2f} s  bare loop {bare_s:6.3f} s  "
              f"ratio {pipeline_s / bare_s:6.1f}x  ({pipeline_s / n * 1e6:,.0f} us a file)")


if __name__ == "__main__":
    main()
