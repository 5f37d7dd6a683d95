"""Forward benchmark on loopback, acks on, 30-key uWSGI-like records, PackedForward chunks
of 1000 events. Every receiver is a pipeline process whose sink has a file buffer, but
for one run of 3.

1. source: a pre-encoded sender (what Fluent Bit or fluentd's out_forward send) on 4
   connections -> `forward source -> discard sink`: the events/s the source acks, that is
   writes and fsyncs to the file buffer.
2. relay: the same sender -> `forward source -> forward sink` (an aggregator) -> a
   `forward -> discard` receiver: what the sink sends when it needs not encode.
3. sink: records built in this process -> our forward sink (its buffer and writers, as a
   pipeline runs them), and the same records -> fluent-logger's sync sender (one event per
   message), into the same `forward -> discard` receiver; once with a memory buffer there
   (the sender is the limit), once with a file buffer (the receiver's fsyncs are).
4. `stdin -> forward sink` (a pipeline process: JSON parsing included) -> the same receiver.
5. end to end: `stdin -> forward sink -> forward source -> file` (JSON lines).

    python bench/bench_forward.py [--events N] [--only source|relay|sink|stdin|end]
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
from collections.abc import Callable
from pathlib import Path

import msgpack
import orjson

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))
CHUNK = 1000


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

    @property
    def mib(self) -> str:
        return f"{self.peak_kib / 1024:.0f} MiB"


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def wait_until(done: Callable[[], bool], what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


class Receiver:
    """A pipeline process: `forward source -> SINK` with a file (or memory) buffer."""

    def __init__(self, tmp: Path, name: str, sink: str, buffer: str = "file"):
        self.port = free_port()
        conf = tmp / f"{name}.yaml"
        conf.write_text(
            f"sources:\n  in: {{type: forward, port: {self.port}}}\n"
            f"sinks:\n  out: {{type: {sink}, inputs: [in], "
            f"buffer: {{type: {buffer}, path: {tmp / (name + '-buf')}, max_bytes: 4GiB}}}}\n")
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(conf)], env=ENV)
        self.rss = PeakRss(self.proc)
        wait_until(self._listening, "the receiver to listen", 30)

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def blast(port: int, messages: list[bytes], connections: int) -> float:
    """Send pre-encoded PackedForward messages, each waiting for its ack, on several
    connections at once (as a sender with several chunks in flight); the elapsed time."""
    work = iter(messages)
    lock = threading.Lock()

    def connection() -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            unpacker = msgpack.Unpacker(raw=False)
            while True:
                with lock:
                    message = next(work, None)
                if message is None:
                    return
                s.sendall(message)
                while next(unpacker, None) is None:
                    data = s.recv(4096)
                    if not data:
                        raise SystemExit("the receiver closed the connection")
                    unpacker.feed(data)

    started = time.perf_counter()
    threads = [threading.Thread(target=connection) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def encoded(n: int) -> list[bytes]:
    from pipeline.codecs import forward_protocol as fp

    messages = []
    for start in range(0, n, CHUNK):
        events = [("bench", time.time_ns(), record(i)) for i in range(start, min(n, start + CHUNK))]
        chunk = fp.new_chunk_id()
        messages.append(fp.packed_forward("bench", fp.pack_entries(events), len(events), chunk, False))
    return messages


def source_scenario(tmp: Path, n: int) -> None:
    messages = encoded(n)
    receiver = Receiver(tmp, "source", "discard")
    try:
        elapsed = blast(receiver.port, messages, connections=4)
    finally:
        receiver.stop()
    print(f"1. forward source, acked into a file buffer (pre-encoded sender, 4 connections): "
          f"{n / elapsed:,.0f} events/s ({elapsed:.2f} s); receiver peak RSS {receiver.rss.mib}")


def relay_scenario(tmp: Path, n: int) -> None:
    messages = encoded(n)
    last = Receiver(tmp, "relay-last", "discard")
    relay = Receiver(tmp, "relay", f"forward, servers: [{{host: 127.0.0.1, port: {last.port}}}]")
    buffered = tmp / "relay-buf"
    try:
        started = time.perf_counter()
        blast(relay.port, messages, connections=4)
        # the relay deletes a chunk when the last receiver acked it
        wait_until(lambda: not any(buffered.glob("*.chunk")), "the relay to deliver")
        elapsed = time.perf_counter() - started
    finally:
        relay.stop()
        last.stop()
    print(f"2. relay: forward source -> forward sink (file buffer) -> a receiver's file buffer: "
          f"{n / elapsed:,.0f} events/s ({elapsed:.2f} s); relay peak RSS {relay.rss.mib}")


def send(tmp: Path, data: Path, port: int, name: str) -> tuple[float, PeakRss]:
    """`stdin -> forward sink` run once over `data`; it exits when every chunk is acked."""
    conf = tmp / f"{name}.yaml"
    conf.write_text(
        "sources:\n  in: {type: stdin}\n"
        f"sinks:\n  fw: {{type: forward, inputs: [in], servers: [{{host: 127.0.0.1, port: {port}}}], "
        f"chunk_max_events: {CHUNK}}}\n")
    started = time.perf_counter()
    with open(data, "rb") as stdin:
        sender = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--once", str(conf)],
                                  env=ENV, stdin=stdin)
        rss = PeakRss(sender)
        if sender.wait():
            raise SystemExit(f"sender exited {sender.returncode}")
    return time.perf_counter() - started, rss


def fluent_logger(port: int, records: list[dict]) -> float:
    from fluent import sender as fluent_sender

    logger = fluent_sender.FluentSender("bench", host="127.0.0.1", port=port, nanosecond_precision=True)
    started = time.perf_counter()
    for r in records:
        if not logger.emit("logger", r):
            raise SystemExit(f"fluent-logger: {logger.last_error}")
    logger.close()
    return time.perf_counter() - started


def our_sink(port: int, records: list[dict]) -> float:
    """The forward sink behind its buffer and writers, as a pipeline runs it, given the
    records in batches; the time until every chunk is acked."""
    import asyncio

    from pipeline.buffer import make_buffer
    from pipeline.config.options import Errors, resolve
    from pipeline.engine.context import Context
    from pipeline.engine.sink_runner import SinkRunner
    from pipeline.plugin import load

    cls = load("sink", "forward")
    problems = Errors()
    conf = resolve(cls.all_options(), {"type": "forward", "inputs": ["in"], "chunk_max_events": CHUNK,
                                       "servers": [{"host": "127.0.0.1", "port": port}]}, "sinks.fw", problems)
    sink = cls(Context("fw", "sink"), conf)

    async def run() -> float:
        buffer = make_buffer(sink.ctx, conf.buffer, chunk_max_events=conf.chunk_max_events,
                             chunk_max_bytes=conf.chunk_max_bytes)
        runner = SinkRunner(sink, buffer, on_give_up=lambda events, reason: None,  # type: ignore[arg-type]
                            on_closed=lambda sink, reason: None)
        await runner.start()
        started = time.perf_counter()
        for start in range(0, len(records), CHUNK):
            t = time.time_ns()
            await buffer.put([("bench", t, r) for r in records[start:start + CHUNK]])
        if not await runner.drain(time.monotonic() + 300):
            raise SystemExit("the forward sink did not deliver everything")
        return time.perf_counter() - started
    return asyncio.run(run())


def sink_scenario(tmp: Path, n: int, logger_n: int) -> None:
    import gc

    # as `pipeline run` does (Runtime.run): the same for both senders
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    records = [record(i) for i in range(n)]
    # a receiver with a memory buffer keeps up with the sender; one with a file buffer, on
    # the same two cores, is what limits it
    for buffer in ("memory", "file"):
        receiver = Receiver(tmp, f"sink-{buffer}", "discard", buffer)
        try:
            ours = n / our_sink(receiver.port, records)
            theirs = logger_n / fluent_logger(receiver.port, records[:logger_n])
        finally:
            receiver.stop()
        print(f"3. the same records, in this process -> forward -> discard ({buffer} buffer): our forward sink "
              f"{ours:,.0f} events/s, fluent-logger's sync sender {theirs:,.0f} events/s: {ours / theirs:.1f}x")


def stdin_scenario(tmp: Path, data: Path, n: int) -> None:
    receiver = Receiver(tmp, "stdin", "discard")
    try:
        elapsed, rss = send(tmp, data, receiver.port, "stdin-sender")
    finally:
        receiver.stop()
    print(f"4. stdin -> forward sink (a pipeline process, JSON parsing included) -> forward -> discard: "
          f"{n / elapsed:,.0f} events/s ({elapsed:.2f} s); sender peak RSS {rss.mib}")


def end_to_end_scenario(tmp: Path, data: Path, n: int, logger_n: int) -> None:
    out = tmp / "out.jsonl"
    receiver = Receiver(tmp, "end", "file, path: " + str(out))
    try:
        started = time.perf_counter()
        _, rss = send(tmp, data, receiver.port, "end-sender")
        wait_until(lambda: count_lines(out) >= n, "the records in the file")
        elapsed = time.perf_counter() - started
        records = [record(i) for i in range(logger_n)]
        started = time.perf_counter()
        fluent_logger(receiver.port, records)
        wait_until(lambda: count_lines(out) >= n + logger_n, "fluent-logger's records in the file")
        logger_elapsed = time.perf_counter() - started
    finally:
        receiver.stop()
    print(f"5. stdin -> forward sink -> forward source -> file (JSON lines): {n / elapsed:,.0f} events/s "
          f"({elapsed:.2f} s); peak RSS sender {rss.mib}, receiver {receiver.rss.mib}")
    print(f"   fluent-logger's sync sender -> the same receiver, until in the file: "
          f"{logger_n / logger_elapsed:,.0f} events/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--logger-events", type=int, default=20_000)
    ap.add_argument("--only", choices=("source", "relay", "sink", "stdin", "end"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        data = tmp / "in.jsonl"
        data.write_bytes(b"".join(orjson.dumps(record(i), option=orjson.OPT_APPEND_NEWLINE)
                                  for i in range(args.events)))
        print(f"{args.events:,} events, 30-key records, PackedForward chunks of {CHUNK}, acks on, loopback")
        if args.only in (None, "source"):
            source_scenario(tmp, args.events)
        if args.only in (None, "relay"):
            relay_scenario(tmp, args.events)
        if args.only in (None, "sink"):
            sink_scenario(tmp, args.events, args.logger_events)
        if args.only in (None, "stdin"):
            stdin_scenario(tmp, data, args.events)
        if args.only in (None, "end"):
            end_to_end_scenario(tmp, data, args.events, args.logger_events)


if __name__ == "__main__":
    main()
