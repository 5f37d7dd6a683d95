"""Syslog TCP intake: N RFC 5424 or RFC 3164 messages (as rsyslog forwards them) sent over one loopback TCP
connection by another process, taken by `syslog (mode: tcp) -> discard` in this process,
against bare asyncio servers in the same run fed the same bytes by the same sender:

- read + split: reads the stream and splits it into messages (str), nothing more;
- read + split + parse: the same, and each read's messages through the same `syslog` parser
  (its batch call, event times included) with facility and severity names added, as the
  source does: the floor of what a syslog server that gives records can do in this process.

    python bench/bench_syslog.py [--messages N] [--rounds R] [--framing lf|octet] [--format rfc5424|rfc3164]
                                 [--parser syslog|none]

Each side is timed from the sender's first byte to the last record counted (for the pipeline:
written by the discard sink), best of R rounds, alternating. Targets: >= 200,000 records/s,
and >= 0.7 of the bare loop that does the same work.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import peak_rss_mib  # noqa: E402
from pipeline.codecs.connections import READ_SIZE  # noqa: E402
from pipeline.codecs.syslog import FACILITY_OF_PRI, SEVERITY_OF_PRI  # noqa: E402
from pipeline.config.graph import build_graph  # noqa: E402
from pipeline.config.options import Errors  # noqa: E402
from pipeline.engine.context import Context  # noqa: E402
from pipeline.engine.process import tune_gc  # noqa: E402
from pipeline.engine.runtime import Runtime  # noqa: E402
from pipeline.parsers import build  # noqa: E402
from tests.helpers import free_port, port_open  # noqa: E402

APPS = [("nginx", "GET /api/v1/items?page=2 HTTP/1.1 200 5123"), ("sshd", "Accepted publickey for deploy from 10.0.3.7"),
        ("app", "request done in 12.3 ms user=42 path=/login"), ("cron", "(root) CMD (run-parts /etc/cron.hourly)")]

# started by the bench, one per measurement: connects, says so, sends all on "go", closes
SENDER = """
import socket, sys
data = open(sys.argv[1], "rb").read()
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
print("ready", flush=True)
sys.stdin.readline()
s.sendall(data)
s.close()
"""


def messages(n: int, rfc5424: bool, octet: bool) -> bytes:
    """n messages as rsyslog's omfwd sends them, about 20 per second of log time, seeded: RFC
    5424 as its RSYSLOG_SyslogProtocol23Format writes them (a stamp to the microsecond), or
    RFC 3164 as its default RSYSLOG_TraditionalForwardFormat does (to the second)."""
    rng = random.Random(24)
    start = 1_791_640_536
    out = []
    for i in range(n):
        app, text = rng.choice(APPS)
        pri, host, pid = rng.choice((13, 30, 38, 86, 131, 158)), f"web-{rng.randrange(8):02d}", rng.randrange(1, 65536)
        if rfc5424:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + i // 20))
            line = f"<{pri}>1 {stamp}.{rng.randrange(10**6):06d}+00:00 {host} {app} {pid} - - {text} n={i}"
        else:
            t = time.gmtime(start + i // 20)
            stamp = time.strftime("%b ", t) + f"{t.tm_mday:>2}" + time.strftime(" %H:%M:%S", t)
            line = f"<{pri}>{stamp} {host} {app}[{pid}]: {text} n={i}"
        data = line.encode()
        out.append(b"%d %s" % (len(data), data) if octet else data + b"\n")
    return b"".join(out)


class Sender:
    """A sender process, connected to `port` and waiting for `go()`."""

    def __init__(self, data_path: str, port: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", SENDER, data_path, str(port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == b"ready\n"

    def go(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()
        return time.perf_counter()

    def done(self) -> None:
        assert self.proc.wait(60) == 0


async def _until(predicate, step: float = 0.002) -> None:
    while not predicate():
        await asyncio.sleep(step)


def pipeline(data_path: str, n: int, parser: str) -> float:
    port = free_port()
    graph = build_graph({"sources": {"in": {"type": "syslog", "mode": "tcp", "port": port, "format": parser}},
                         "sinks": {"out": {"type": "discard", "inputs": ["in"]}}}, Errors(file="<bench>"))

    async def run() -> float:
        rt = Runtime(graph)
        task = asyncio.create_task(rt.run())
        await _until(lambda: port_open(port), 0.01)
        sender = await asyncio.to_thread(Sender, data_path, port)
        written = rt.contexts["out"].counters
        started = sender.go()
        await _until(lambda: written["events_out"] >= n)
        elapsed = time.perf_counter() - started
        rt.stop()
        await task
        sender.done()
        if written["events_out"] != n or rt.contexts["in"].counters["errors"]:
            raise SystemExit(f"pipeline: {written['events_out']} of {n} records, {rt.contexts['in'].counters}")
        return elapsed
    return asyncio.run(run())


def bare(data_path: str, n: int, parse: bool, octet: bool, parser_name: str) -> float:
    """A bare asyncio server: reads, splits into messages (and parses them), counts."""
    parser = build(parser_name, Context("bare", "source"))
    facility, severity = FACILITY_OF_PRI, SEVERITY_OF_PRI

    async def run() -> float:
        count = 0
        finished = asyncio.Event()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal count
            rest = b""
            while data := await reader.read(READ_SIZE):
                data = rest + data
                if octet:
                    texts, pos, end = [], 0, len(data)
                    while pos < end:
                        space = data.find(b" ", pos, pos + 11)
                        if space < 0:
                            break
                        stop = space + 1 + int(data[pos:space])
                        if stop > end:
                            break
                        texts.append(data[space + 1:stop].decode("utf-8", "replace"))
                        pos = stop
                    rest = data[pos:]
                else:
                    cut = data.rfind(b"\n") + 1
                    rest = data[cut:]
                    texts = data[:cut - 1].decode("utf-8", "replace").split("\n")
                if parse:
                    batch = parser.parse_lines(texts, "bare", "bench")
                    for _, _, record in batch:
                        pri = record.get("pri")
                        if type(pri) is int and pri < 192:
                            record["facility"] = facility[pri]
                            record["severity"] = severity[pri]
                    count += len(batch)
                else:
                    count += len(texts)
            writer.close()
            finished.set()

        port = free_port()
        server = await asyncio.start_server(connection, "127.0.0.1", port, limit=READ_SIZE)
        sender = await asyncio.to_thread(Sender, data_path, port)
        started = sender.go()
        await finished.wait()
        elapsed = time.perf_counter() - started
        server.close()
        sender.done()
        if count != n:
            raise SystemExit(f"bare loop: {count} of {n} records")
        return elapsed
    return asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--framing", choices=("lf", "octet"), default="lf")
    ap.add_argument("--format", choices=("rfc3164", "rfc5424"), default="rfc5424")
    ap.add_argument("--parser", default="syslog",
                    help="the source's format: syslog, or none (each message whole in `message`: the "
                         "cost of intake alone)")
    args = ap.parse_args()
    octet = args.framing == "octet"
    n = args.messages
    tune_gc()  # the pipeline's collector settings for every side (Runtime.run sets them too)
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "messages")
        data = messages(n, args.format == "rfc5424", octet)
        Path(data_path).write_bytes(data)
        runs = {"pipeline (syslog -> discard)": lambda: pipeline(data_path, n, args.parser),
                "bare: read + split": lambda: bare(data_path, n, False, octet, args.parser),
                "bare: read + split + parse": lambda: bare(data_path, n, True, octet, args.parser)}
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(args.rounds):
            for name, run in runs.items():
                best[name] = min(best[name], run())
    size = len(data) / n
    print(f"syslog TCP intake, {args.framing} framing, format: {args.parser}: {n:,} {args.format} messages "
          f"({size:.0f} bytes each), "
          f"best of {args.rounds}, load average {os.getloadavg()[0]:.2f}")
    mine = n / best["pipeline (syslog -> discard)"]
    for name, seconds in best.items():
        rate = n / seconds
        print(f"  {name:<30} {rate:>10,.0f} records/s  ({seconds:.3f} s)  pipeline = {mine / rate:.0%} of it")
    print(f"  peak RSS {peak_rss_mib():.0f} MiB (whole bench process)")


if __name__ == "__main__":
    main()
