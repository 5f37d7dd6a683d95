"""Parser benchmark: 1,000,000 generated nginx `combined` lines through `stdin -> format: nginx
(with its time) -> file`, against a bare loop doing the same work in the same process (the same
compiled regex and types, the same time cache, orjson.dumps, write); then what the `grep` and
`record` filters cost per event.

    python bench/bench_parsers.py [--lines N] [--rounds R]

stdin stands for the tail source, which is not merged yet: both hand the parser whole lines.
Targets: >= 100,000 lines/s and >= 0.8 of the bare loop; grep and record <= 1 us per event.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
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


def nginx_lines(n: int) -> list[bytes]:
    """n lines as nginx writes them, about 20 per second of log time, seeded."""
    rng = random.Random(13)
    start = 1_791_640_536
    out = []
    for i in range(n):
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(start + i // 20))
        out.append((f'10.0.{rng.randrange(256)}.{rng.randrange(256)} - - [{stamp}] '
                    f'"{rng.choice(["GET", "GET", "POST"])} {rng.choice(PATHS)} HTTP/1.1" '
                    f'{rng.choice([200, 200, 200, 304, 404, 500])} {rng.randrange(100000)} '
                    f'"-" "{rng.choice(AGENTS)}"').encode())
    return out


def bare_loop(lines: list[bytes], out_path: str) -> float:
    match = PATTERN.match
    parse_time = parser_of("%d/%b/%Y:%H:%M:%S %z")
    to_int = CONVERTERS["int"]
    dumps, nl = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    started = time.perf_counter()
    with open(out_path, "wb") as out:
        for line in lines:
            record = match(line.decode("utf-8", "replace")).groupdict()
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
    lines = nginx_lines(args.lines)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.jsonl")
        doc = {"sources": {"in": {"type": "stdin", "format": "nginx"}},
               "sinks": {"file": {"type": "file", "inputs": ["in"], "path": out, "time_key": "time"}}}

        def pipeline() -> float:
            if os.path.exists(out):
                os.remove(out)
            return run_graph(doc, lines)

        pipeline_s, bare_s = best_of(args.rounds, pipeline, lambda: bare_loop(lines, os.path.join(tmp, "bare")))
        with open(out, "rb") as f:
            written = sum(1 for _ in f)
    assert written == len(lines), f"the pipeline wrote {written} records of {len(lines)}"
    p, b = len(lines) / pipeline_s, len(lines) / bare_s
    print(f"stdin -> format: nginx (time) -> file: {len(lines)} lines")
    print(f"  pipeline   {p:>12,.0f} lines/s  ({pipeline_s:.3f} s)")
    print(f"  bare loop  {b:>12,.0f} lines/s  ({bare_s:.3f} s)")
    print(f"  ratio      {p / b:.0%} of the bare loop")
    print(f"  peak RSS   {peak_rss_mib():.0f} MiB (whole bench process, the lines held in memory included)")

    parsed = make_plugin("filter", "parse", field="log", format="nginx")
    batch = parsed.process([("web.app.prod", 0, {"log": line.decode()}) for line in lines[:10000]])
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
