"""Forward benchmark on loopback, acks on: `stdin -> forward sink` in one pipeline process,
`forward source -> file (file buffer)` in another; then fluent-logger's sync sender into the
same receiver. 30-key uWSGI-like records, PackedForward chunks of 1000 events.

    python bench/bench_forward.py [--events N]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def record(i: int) -> dict:
    r: dict = {f"field_{k:02d}": i * k for k in range(24)}
    r.update(id=i % 4, pid=1000 + i % 4, status="idle", avg_rt=143, tx=685869 + i, requests=i)
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PeakRss:
    """Samples a process's VmHWM (its peak resident set) until it exits."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.peak_kib = proc, 0
        threading.Thread(target=self.sample, daemon=True).start()

    def sample(self) -> None:
        while self.proc.poll() is None:
            try:
                for line in open(f"/proc/{self.proc.pid}/status"):
                    if line.startswith("VmHWM:"):
                        self.peak_kib = max(self.peak_kib, int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.05)


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def wait_lines(path: Path, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while count_lines(path) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {count_lines(path)} of {n} events arrived")
        time.sleep(0.02)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--logger-events", type=int, default=20_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    port = free_port()
    out = tmp / "out.jsonl"
    (tmp / "recv.yaml").write_text(
        f"sources:\n  in: {{type: forward, port: {port}}}\n"
        f"sinks:\n  out: {{type: file, inputs: [in], path: {out}, buffer: {{type: file, path: {tmp / 'buf'}}}}}\n")
    (tmp / "send.yaml").write_text(
        "sources:\n  in: {type: stdin}\n"
        f"sinks:\n  fw: {{type: forward, inputs: [in], servers: [{{host: 127.0.0.1, port: {port}}}], "
        "chunk_max_events: 1000}\n")
    data = tmp / "in.jsonl"
    data.write_bytes(b"".join(orjson.dumps(record(i), option=orjson.OPT_APPEND_NEWLINE) for i in range(args.events)))

    receiver = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(tmp / "recv.yaml")], env=ENV,
                                stderr=subprocess.DEVNULL)
    recv_rss = PeakRss(receiver)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    started = time.perf_counter()
    with open(data, "rb") as stdin:
        sender = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--once", str(tmp / "send.yaml")],
                                  env=ENV, stdin=stdin)
        send_rss = PeakRss(sender)
        status = sender.wait()
    wait_lines(out, args.events)
    elapsed = time.perf_counter() - started
    if status:
        raise SystemExit(f"sender exited {status}")

    from fluent import sender as fluent_sender

    logger = fluent_sender.FluentSender("bench", host="127.0.0.1", port=port, nanosecond_precision=True)
    one = record(1)
    logger_started = time.perf_counter()
    for _ in range(args.logger_events):
        logger.emit("logger", one)
    logger.close()
    wait_lines(out, args.events + args.logger_events)
    logger_elapsed = time.perf_counter() - logger_started
    receiver.terminate()
    receiver.wait()

    ours = args.events / elapsed
    theirs = args.logger_events / logger_elapsed
    print(f"{args.events} events, 30-key records, PackedForward chunks of 1000, acks on, loopback")
    print(f"  stdin -> forward sink -> forward source -> file (file buffer): {ours:,.0f} events/s ({elapsed:.2f} s)")
    print(f"  fluent-logger sync sender -> same source:                     {theirs:,.0f} events/s")
    print(f"  ratio: our sink sends {ours / theirs:.1f}x fluent-logger's events/s")
    print(f"  peak RSS: sender {send_rss.peak_kib / 1024:.0f} MiB, receiver {recv_rss.peak_kib / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
