"""Parser benchmark: 1,000,000 generated nginx `combined` lines, written to a file on disk,
through `tail (--once, read_from_head) -> format: nginx (with its time) -> file`, against a
bare loop doing the same work in the same process (the same compiled regex and types, the
same time cache, orjson.dumps, write); then what the `grep` and `record` filters cost per event.

    python bench/bench_parsers.py [--lines N] [--rounds R]

Targets: >= 100,000 lines/s and >= 0.8 of the bare loop; grep and record <= 1 us per event.
The input is never held in memory (by either side): the peak RSS is the pipeline's own.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import best_of, peak_rss_mib, run_graph  # noqa: E402
from pipeline.parsers import CONVERTERS  # noqa: E402
from pipeline.parsers._time import parser_of  # noqa: E402
from pipeline.parsers.nginx import PATTERN  # noqa: E402
from tests.helpers import make_plugin  # noqa: E402

AGENTS = ["curl/7.88.1", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
          "Prometheus/2.42.0", "Go-http-client/1.1"]
PATHS = ["/", "/index.html", "/api/v1/items?page=2", "/static/app.js", "/login", "/caf\\xC3\\xA9/\\x22q\\x22"]


def nginx_lines(n: int) -> Iterator[bytes]:
    """n lines as nginx writes them, about 20 per second of log time, seeded."""
    rng = random.Random(13)
    start = 1_791_640_536
    for i in range(n):
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(start + i // 20))
        yield (f'10.0.{rng.randrange(256)}.{rng.randrange(256)} - - [{stamp}] '
               f'"{rng.choice(["GET", "GET", "POST"])} {rng.choice(PATHS)} HTTP/1.1" '
               f'{rng.choice([200, 200, 200, 304, 404, 500])} {rng.randrange(100000)} '
               f'"-" "{rng.choice(AGENTS)}"\n').encode()


def write_log(path: str, n: int) -> None:
    lines = nginx_lines(n)
    with open(path, "wb") as f:
        while chunk := b"".join(itertools.islice(lines, 10_000)):
            f.write(chunk)


def bare_loop(log: str, out_path: str) -> float:
    match = PATTERN.match
    parse_time = parser_of("%d/%b/%Y:%H:%M:%S %z")
    to_int = CONVERTERS["int"]
    dumps, nl = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    started = time.perf_counter()
    with open(log, "rb") as lines, open(out_path, "wb") as out:
        for line in lines:
            record = match(line[:-1].decode("utf-8", "replace")).groupdict()
            record["status"] = to_int(record["status"])
            record["size"] = to_int(record["size"])
            record["time"] = parse_time(record.pop("time"))
            out.write(dumps(record, option=nl))
    return time.perf_counter() - started


def per_event_us(name: str, plugin, batch, repeat: int = 20) -> float:
    # CPU time of this process: the machine's other load does not count against the filter
    started = time.process_time()
    for _ in range(repeat):
        plugin.process(batch)
    us = (time.process_time() - started) / (repeat * len(batch)) * 1e6
    print(f"  {name:<44} {us:.2f} us/event")
    return us


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2, help="measure each side this many times, keep the best")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log, out, state = (os.path.join(tmp, name) for name in ("access.log", "out.jsonl", "state"))
        write_log(log, args.lines)
        before = peak_rss_mib()
        doc = {"state_dir": state,
               "sources": {"in": {"type": "tail", "path": log, "read_from_head": True, "format": "nginx"}},
               "sinks": {"file": {"type": "file", "inputs": ["in"], "path": out, "time_key": "time"}}}

        def pipeline() -> float:
            for old in (out, state):  # a first start each time: read_from_head reads it all
                if os.path.isdir(old):
                    shutil.rmtree(old)
                elif os.path.exists(old):
                    os.remove(old)
            return run_graph(doc)

        pipeline_s, bare_s = best_of(args.rounds, pipeline, lambda: bare_loop(log, os.path.join(tmp, "bare")))
        with open(out, "rb") as f:
            written = sum(1 for _ in f)
        with open(log, "rb") as f:
            first = [line.rstrip(b"\n").decode() for line in itertools.islice(f, 10_000)]
    assert written == args.lines, f"the pipeline wrote {written} records of {args.lines}"
    p, b = args.lines / pipeline_s, args.lines / bare_s
    print(f"tail -> format: nginx (time) -> file: {args.lines} lines, load average {os.getloadavg()[0]:.2f}")
    print(f"  pipeline   {p:>12,.0f} lines/s  ({pipeline_s:.3f} s)")
    print(f"  bare loop  {b:>12,.0f} lines/s  ({bare_s:.3f} s)")
    print(f"  ratio      {p / b:.0%} of the bare loop")
    print(f"  peak RSS   {peak_rss_mib():.0f} MiB (whole bench process; {before:.0f} MiB before the runs)")

    parsed = make_plugin("filter", "parse", field="log", format="nginx")
    batch = parsed.process([("web.app.prod", 0, {"log": line}) for line in first])
    print("filters on parsed nginx records, 10,000 events per batch:")
    per_event_us("grep: 1 regexp rule", make_plugin("filter", "grep", regexp=[{"key": "method", "pattern": "^GET$"}]),
                 batch)
    per_event_us("grep: 2 regexp + 1 exclude", make_plugin(
        "filter", "grep", regexp=[{"key": "method", "pattern": "^GET$"}, {"key": "path", "pattern": "^/"}],
        exclude=[{"key": "status", "pattern": "^5"}]), batch)
    per_event_us("record: set host, env, ${tag_parts[1]}", make_plugin(
        "filter", "record", set={"host": "${hostname}", "env": "prod", "service": "${tag_parts[1]}"}), batch)
    per_event_us("record: set 3 + ${record.status} + remove 1", make_plugin(
        "filter", "record", set={"host": "${hostname}", "env": "prod", "service": "${tag_parts[1]}",
                                 "code": "${record.status}"}, remove=["user"]), batch)


if __name__ == "__main__":
    main()
