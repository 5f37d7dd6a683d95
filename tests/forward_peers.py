"""Real pipeline processes on both ends of the forward protocol, for the forward tests."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
from helpers import free_port, port_open, run_pipeline, start_pipeline, wait_for


class Receiver:
    """`pipeline run` with a forward (or `type`) source writing every event to a JSON-lines file."""

    def __init__(self, tmp: Path, name: str = "recv", port: int | None = None, source: str = "", sink: str = "",
                 type: str = "forward", extra: str = "", **popen: Any):
        self.dir = tmp / name
        self.dir.mkdir(exist_ok=True)
        self.port = port or free_port()
        self.out = self.dir / "out.jsonl"
        self.conf = self.dir / "conf.yaml"
        self.conf.write_text(
            f"sources:\n  in: {{type: {type}, port: {self.port}{', ' + source if source else ''}}}\n"
            f"sinks:\n  out: {{type: file, inputs: [in], path: {self.out}, tag_key: tag, time_key: time, "
            f"time_format: float{', ' + sink if sink else ''}}}\n{extra}")
        self.proc: subprocess.Popen | None = None
        self.popen = popen
        self.start()

    def start(self) -> None:
        self.proc = start_pipeline("run", str(self.conf), **self.popen)
        assert wait_for(lambda: port_open(self.port) or self.proc.poll() is not None), "receiver did not start"
        assert self.proc.poll() is None, self.proc.stderr.read().decode()

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=20)
        return err.decode()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def peak_memory(self) -> int:
        """The receiver's peak resident memory so far, in bytes."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) * 1024

    def records(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines()]


def sender_conf(tmp: Path, sink: str, name: str = "send.yaml", source: str = "{type: stdin, tag: app.test}") -> Path:
    conf = tmp / name
    conf.write_text(f"shutdown_timeout: 3s\nsources:\n  in: {source}\nsinks:\n  fw: {{type: forward, inputs: [in], {sink}}}\n")
    return conf


def numbered(n: int, start: int = 0) -> bytes:
    return b"".join(b'{"n": %d, "payload": "%s"}\n' % (i, b"x" * 20) for i in range(start, start + n))


def feeding(proc: subprocess.Popen, total: int, step: int = 100) -> threading.Thread:
    """A started thread writing `total` numbered records to the stdin of `proc`, `step` at a
    time a little apart, then closing it."""
    def feed() -> None:
        for start in range(0, total, step):
            proc.stdin.write(numbered(step, start))
            proc.stdin.flush()
            time.sleep(0.02)
        proc.stdin.close()

    writer = threading.Thread(target=feed)
    writer.start()
    return writer


def send(conf: Path, data: bytes, timeout: float = 60):
    return run_pipeline("run", "--once", str(conf), input=data, timeout=timeout)


def talk(port: int, data: bytes, replies: int = 1, timeout: float = 10, half_close: bool = False) -> list:
    """Send raw bytes to a forward source; its replies (acks), until `replies` or it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if half_close:  # the sender stops mid-message and says so
            s.shutdown(socket.SHUT_WR)
        u = msgpack.Unpacker(raw=False)
        got: list = []
        while len(got) < replies:
            chunk = s.recv(65536)
            if not chunk:
                break
            u.feed(chunk)
            got += list(u)
        return got
