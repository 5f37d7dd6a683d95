"""Parser benchmark: 1,000,000 generated nginx `combined` lines, written to a file on disk,
through `tail (--once, read_from_head) -> format: nginx (with its time) -> file`, against a
bare loop doing the same work in the same process (the same compiled regex and types, the
same time cache, orjson.dumps, write); then what the `grep` and `record` filters cost per event.

    python bench/bench_parsers.py [--lines N] [--rounds R] [--filters-only]
    FLUENT_BIT=/path/to/fluent-bit python bench/bench_parsers.py

The filters are measured first (see filter_costs). With FLUENT_BIT set, Fluent Bit's own
`tail -> parser nginx -> file` runs on the same file too (see fluent_bit).

Targets: >= 100,000 lines/s and >= 0.8 of the bare loop; grep and record <= 1 us per event.
The input is never held in memory (by either side): the peak RSS is the pipeline's own.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import best_of, peak_rss_mib, run_graph  # noqa: E402
from pipeline.engine.process import tune_gc  # noqa: E402
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


# Fluent Bit's stock nginx parser (conf/parsers.conf), plus the two integer types the pipeline's
# nginx format gives status and size, so that both sides do the same work; its file output's
# plain format writes the record without the parsed time (the pipeline's file sink writes it)
FLUENT_BIT_PARSERS = r"""[PARSER]
    Name        nginx
    Format      regex
    Regex       ^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")
    Time_Key    time
    Time_Format %d/%b/%Y:%H:%M:%S %z
    Types       code:integer size:integer
"""


def fluent_bit(binary: str, log: str, tmp: str, n: int) -> tuple[float, float, float]:
    """Fluent Bit's `tail (read_from_head) -> parser nginx -> file` on the same file: the wall
    time from its start until its output holds n records, the CPU seconds it used by then (all
    its threads) and its peak RSS (VmHWM) in MiB.
    Its tail's exit_on_eof would time its shutdown (a grace period) as well, so the output is
    watched instead and Fluent Bit stopped after; a short flush interval keeps its default 1 s
    batching out of the figure."""
    out = os.path.join(tmp, "fluent-bit.out")
    conf = os.path.join(tmp, "fluent-bit.conf")
    with open(os.path.join(tmp, "parsers.conf"), "w") as f:
        f.write(FLUENT_BIT_PARSERS)
    with open(conf, "w") as f:
        f.write(f"[SERVICE]\n    Flush 0.05\n    Log_Level error\n    Parsers_File {tmp}/parsers.conf\n"
                f"[INPUT]\n    Name tail\n    Path {log}\n    Read_From_Head On\n    Parser nginx\n"
                f"[OUTPUT]\n    Name file\n    Match *\n    Path {tmp}\n    File fluent-bit.out\n    Format plain\n")
    if os.path.exists(out):
        os.remove(out)
    started = time.perf_counter()
    with open(os.path.join(tmp, "fluent-bit.log"), "wb") as log_file:  # its "caught signal" notice
        proc = subprocess.Popen([binary, "-q", "-c", conf], stdout=subprocess.DEVNULL, stderr=log_file)
    seen, output = 0, None
    try:
        while seen < n:
            if proc.poll() is not None:
                with open(os.path.join(tmp, "fluent-bit.log"), errors="replace") as f:
                    raise SystemExit(f"fluent-bit exited with status {proc.returncode} after {seen} of {n}"
                                     f" records:\n{f.read()[-2000:]}")
            if time.perf_counter() - started > 600:
                raise SystemExit(f"fluent-bit wrote {seen} of {n} records in 600 s")
            time.sleep(0.01)
            if output is None and os.path.exists(out):
                output = open(out, "rb")  # noqa: SIM115 - closed below
            if output is not None:  # only the bytes since the last look: cheap to poll
                seen += output.read().count(b"\n")
        elapsed = time.perf_counter() - started
        with open(f"/proc/{proc.pid}/stat") as stat:  # utime and stime, after the ")" of comm
            cpu_s = sum(map(int, stat.read().rsplit(")", 1)[1].split()[11:13])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{proc.pid}/status") as status:
            hwm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if output is not None:
            output.close()
    if seen != n:
        raise SystemExit(f"fluent-bit wrote {seen} records of {n}")
    return elapsed, cpu_s, hwm_kib / 1024


def per_event_us(process: Callable[[list], list], batch: list, rounds: int, repeat: int = 20) -> float:
    # CPU time of this process (the machine's other load does not count against it), best round
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(repeat):
            process(batch)
        best = min(best, time.process_time() - started)
    return best / (repeat * len(batch)) * 1e6


def filter_costs(rounds: int) -> None:
    """grep and record on parsed nginx records with the configs a user writes, each against a
    comprehension doing the same work by hand. Measured first, in a fresh process under the
    collector settings the pipeline runs with (pipeline.process.tune_gc), so that neither a
    pipeline run's leftovers nor the default thresholds' rescans bias the figures."""
    host = socket.gethostname()
    get, path, five = re.compile("^GET$").search, re.compile("^/").search, re.compile("^5").search
    ip = re.compile(r"^10\.0\.1\d\.").search
    cases: list[tuple[str, str, dict[str, Any], Callable[[list], list]]] = [
        ("grep: 1 regexp rule", "grep", {"regexp": [{"key": "method", "pattern": "^GET$"}]},
         lambda b: [e for e in b if (v := e[2].get("method")) is not None and get(v)]),
        ("grep: 2 regexp + 1 exclude", "grep", {
            "regexp": [{"key": "method", "pattern": "^GET$"}, {"key": "path", "pattern": "^/"}],
            "exclude": [{"key": "status", "pattern": "^5"}]},
         lambda b: [e for e in b if (v := e[2].get("method")) is not None and get(v)
                    and (v := e[2].get("path")) is not None and path(v)
                    and ((v := e[2].get("status")) is None or not five(str(v)))]),
        ("grep: 1 regexp, every value new (remote)", "grep", {"regexp": [{"key": "remote", "pattern": r"^10\.0\.1\d\."}]},
         lambda b: [e for e in b if (v := e[2].get("remote")) is not None and ip(v)]),
        ("record: set host, env, ${tag_parts[1]}", "record",
         {"set": {"host": "${hostname}", "env": "prod", "service": "${tag_parts[1]}"}},
         lambda b: [(tag, t, r | {"host": host, "env": "prod", "service": tag.split(".")[1]}) for tag, t, r in b]),
        ("record: set 3 + ${record.status} + remove 1", "record", {
            "set": {"host": "${hostname}", "env": "prod", "service": "${tag_parts[1]}", "code": "${record.status}"},
            "remove": ["user"]},
         lambda b: [(tag, t, {k: v for k, v in r.items() if k != "user"} | {
             "host": host, "env": "prod", "service": tag.split(".")[1], "code": r.get("status")}) for tag, t, r in b]),
    ]
    lines = [line.rstrip(b"\n").decode() for line in nginx_lines(10_000)]
    batch = make_plugin("filter", "parse", field="log", format="nginx").process(
        [("web.app.prod", 0, {"log": line}) for line in lines])
    tune_gc()
    print(f"filters on parsed nginx records, 10,000 events per batch, load average {os.getloadavg()[0]:.2f}:")
    print(f"  {'':<44} {'filter':>8} {'by hand':>8}")
    for name, kind, options, by_hand in cases:
        plugin = make_plugin("filter", kind, **options)
        assert plugin.process(batch) == by_hand(batch), name
        us, bare = per_event_us(plugin.process, batch, rounds), per_event_us(by_hand, batch, rounds)
        print(f"  {name:<44} {us:>5.2f} us {bare:>5.2f} us per event")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2, help="measure each side this many times, keep the best")
    ap.add_argument("--filters-only", action="store_true", help="measure only grep and record")
    args = ap.parse_args()
    fb_binary = os.environ.get("FLUENT_BIT")
    filter_costs(max(args.rounds, 5))
    if args.filters_only:
        return
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

        runs = [pipeline, lambda: bare_loop(log, os.path.join(tmp, "bare"))]
        fb_runs: list[tuple[float, float, float]] = []
        if fb_binary:
            def fb() -> float:
                fb_runs.append(fluent_bit(fb_binary, log, tmp, args.lines))
                return fb_runs[-1][0]
            runs.append(fb)
        pipeline_s, bare_s = best_of(args.rounds, *runs)[:2]
        with open(out, "rb") as f:
            written = sum(1 for _ in f)
    assert written == args.lines, f"the pipeline wrote {written} records of {args.lines}"
    p, b = args.lines / pipeline_s, args.lines / bare_s
    print(f"tail -> format: nginx (time) -> file: {args.lines} lines, load average {os.getloadavg()[0]:.2f}")
    print(f"  pipeline   {p:>12,.0f} lines/s  ({pipeline_s:.3f} s)")
    print(f"  bare loop  {b:>12,.0f} lines/s  ({bare_s:.3f} s)")
    print(f"  ratio      {p / b:.0%} of the bare loop")
    print(f"  peak RSS   {peak_rss_mib():.0f} MiB (whole bench process; {before:.0f} MiB before the runs)")
    if fb_binary:
        version = subprocess.run([fb_binary, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        fb_best = min(fb_runs)
        f = args.lines / fb_best[0]
        print(f"  fluent-bit {f:>12,.0f} lines/s  ({fb_best[0]:.3f} s, {fb_best[1]:.2f} s CPU; {version},"
              " start to last record out)")
        print(f"  fluent-bit peak RSS {max(r[2] for r in fb_runs):.0f} MiB (VmHWM); the pipeline is"
              f" {p / f:.0%} of its rate")


if __name__ == "__main__":
    main()
