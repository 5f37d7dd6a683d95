"""A real pipeline (forward source, file sink with a file buffer, `_errors` to a file) and
msgpack frames built by hand, for the poison-record tests: what a hostile or broken
sender can put on the wire, msgpack-python's packer would refuse to build."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import msgpack
from helpers import free_port, port_open, start_pipeline, wait_for

from pipeline.codecs import forward_protocol as fp

T0 = 1700000000


def entry(record: bytes, seconds: int = T0) -> bytes:
    """`[EventTime, record]`, the record as raw msgpack bytes."""
    return b"\x92\xd7\x00" + struct.pack(">II", seconds, 0) + record


def good_blob(n: int, start: int = 0) -> bytes:
    return b"".join(entry(msgpack.packb({"n": i, "ok": True})) for i in range(start, start + n))


def packed_message(tag: str | bytes, blob: bytes, count: int, chunk: str) -> bytes:
    head = msgpack.packb(tag) if isinstance(tag, str) else b"\xda" + struct.pack(">H", len(tag)) + tag
    return b"\x93" + head + fp.bin_header(len(blob)) + blob + msgpack.packb({"size": count, "chunk": chunk})


class Relay:
    """`pipeline run`: forward source -> file sink (`path`, file buffer); `_errors` -> a file."""

    def __init__(self, tmp: Path, path: str | None = None, sink: str = "", source: str = ""):
        self.dir = tmp
        self.port = free_port()
        self.out = tmp / "out.jsonl"
        self.errors = tmp / "errors.jsonl"
        self.conf = tmp / "conf.yaml"
        self.conf.write_text(
            f"sources:\n  in: {{type: forward, port: {self.port}{', ' + source if source else ''}}}\n"
            f"sinks:\n"
            f"  out: {{type: file, inputs: [in], path: '{path or self.out}', time_key: time,"
            f" time_format: iso8601, tag_key: '', retry_max_interval: 0.2s,"
            f" buffer: {{type: file, path: '{tmp / 'buffer'}'}}{', ' + sink if sink else ''}}}\n"
            f"  errors: {{type: file, inputs: [_errors], path: '{self.errors}'}}\n")
        self.start()

    def start(self) -> None:
        self.proc = start_pipeline("run", str(self.conf))
        assert wait_for(lambda: port_open(self.port) or self.proc.poll() is not None), "relay did not start"
        assert self.proc.poll() is None, self.proc.stderr.read().decode()

    def peak_rss(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) * 1024

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=30)
        return err.decode()

    @staticmethod
    def rows(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def records(self) -> list[dict]:
        return self.rows(self.out)

    def error_records(self) -> list[dict]:
        return self.rows(self.errors)

    def good_numbers(self) -> list[int]:
        return sorted(r["n"] for r in self.records() if "n" in r)
