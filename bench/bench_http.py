"""http source intake: NDJSON bodies of 1,000 records POSTed over keep-alive connections
into `http source -> discard sink` (a pipeline process), against a bare asyncio server in a
process of its own, in the same run, that reads the same requests (head, Content-Length,
body), splits each body into lines, parses every line with orjson and answers 200: the
least a server that takes these records can do.

The sender is this process: the requests are made once and sent as they are, on
`--connections` connections, each waiting for its answer before the next (keep-alive, no
pipelining). Records/s are counted from the first request to the last answer, and per CPU
second of the server process (its utime + stime from /proc): on a machine shared with other
work the second ratio is the one to trust. Rounds alternate between the two servers, and the
best of each is kept.

    python bench/bench_http.py [--requests 400] [--connections 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))
RECORDS = int(os.environ.get("BENCH_RECORDS", 1000))

BARE = r"""
import asyncio, sys, orjson

async def serve(reader, writer):
    loads = orjson.loads
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            records = [loads(line) for line in body.split(b"\n") if line]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]), limit=256 * 1024)
    await server.serve_forever()

asyncio.run(main())
"""


def record(i: int) -> dict:
    return {"time": 1700000000 + i // 1000, "host": f"web-{i % 16}", "method": "GET",
            "path": f"/api/items/{i}", "status": 200, "bytes": 1024 + i % 4096, "duration_ms": 12.5,
            "agent": "Mozilla/5.0 (X11; Linux x86_64)"}


def requests(n: int) -> list[bytes]:
    out = []
    for r in range(n):
        body = b"".join(orjson.dumps(record(r * RECORDS + i)) + b"\n" for i in range(RECORDS))
        out.append(b"POST /bench HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return out


async def send(port: int, reqs: list[bytes], connections: int) -> float:
    async def one(part: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for req in part:
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"answered {head[:40]!r}")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(reqs[i::connections]) for i in range(connections)))
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_open(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server did not start: {proc.stderr.read().decode() if proc.stderr else ''}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(argv: list[str], port: int, reqs: list[bytes], connections: int) -> tuple[float, float]:
    """Wall seconds and the server's CPU seconds to take `reqs`."""
    proc = subprocess.Popen(argv, env=ENV, stderr=subprocess.PIPE)
    try:
        wait_open(port, proc)
        before = cpu_seconds(proc.pid)
        wall = asyncio.run(send(port, reqs, connections))
        return wall, cpu_seconds(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    reqs = requests(args.requests)
    n = args.requests * RECORDS
    wall = {"pipeline": float("inf"), "bare loop": float("inf")}
    cpu = dict(wall)
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "http.yaml"
        for _ in range(args.rounds):
            port, bare_port = free_port(), free_port()
            conf.write_text(f"sources:\n  in: {{type: http, port: {port}}}\n"
                            "sinks:\n  out: {type: discard, inputs: [in]}\n")
            runs = {"pipeline": ([sys.executable, "-m", "pipeline", "run", str(conf)], port),
                    "bare loop": ([sys.executable, "-c", BARE, str(bare_port)], bare_port)}
            for name, (argv, at) in runs.items():
                w, c = measure(argv, at, reqs, args.connections)
                wall[name], cpu[name] = min(wall[name], w), min(cpu[name], c)
    size = sum(len(r) for r in reqs) / len(reqs)
    print(f"http source intake: {n:,} records in {args.requests} NDJSON bodies of {RECORDS} "
          f"({size / 1024:.0f} KiB each), {args.connections} keep-alive connections, best of {args.rounds}")
    for name in wall:
        print(f"  {name:<10} {n / wall[name]:>12,.0f} records/s  ({wall[name]:.3f} s)"
              f"   {n / cpu[name]:>12,.0f} records per CPU second ({cpu[name]:.2f} s)")
    print(f"  ratio      {wall['bare loop'] / wall['pipeline']:.0%} of the bare loop by wall time, "
          f"{cpu['bare loop'] / cpu['pipeline']:.0%} by the servers' CPU time")


if __name__ == "__main__":
    main()
