"""A full disk under a real pipeline: every acked record arrives once the space is back.

A file buffer (and, for stdin, the file sink's output) lives on a small tmpfs that the test
mounts (root only) and fills; a forward sender counts what was acked, the test frees the
space, and every acked record must arrive, with and without SIGKILLs and restarts.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import msgpack
import pytest
from forward_peers import Receiver
from helpers import ROOT, fill, free_port, port_open, wait_for

PAD = "x" * 80


def test_a_put_on_a_full_disk_waits_with_the_chunk_whole_and_goes_on_when_there_is_room(small_disk):
    from types import SimpleNamespace

    from pipeline.buffer.file import FileBuffer, read_chunk
    from pipeline.engine.context import Context

    errors: list = []
    conf = SimpleNamespace(type="file", path=str(small_disk / "buffer"), max_bytes=10**9, overflow="block")
    buffer = FileBuffer(Context("b", "sink", on_error=errors.append), conf, chunk_max_events=10**6,
                        chunk_max_bytes=10**9)
    filler = fill(small_disk, leave=100_000)

    async def main():
        await buffer.open()
        await buffer.put([("t", 0, {"n": -1})])
        put = asyncio.ensure_future(buffer.put([("t", 0, {"n": n, "pad": PAD}) for n in range(5000)]))
        await asyncio.sleep(1)
        assert not put.done()  # held back, not acked, not failed
        [path] = (small_disk / "buffer").glob("*.chunk")
        items, count, end, skipped = read_chunk(path)
        assert (count, end, skipped) == (1, path.stat().st_size, 0)  # the failed write was cut off
        filler.unlink()
        await asyncio.wait_for(put, 10)
        buffer.close()
    asyncio.run(main())
    [path] = (small_disk / "buffer").glob("*.chunk")
    items, count, end, skipped = read_chunk(path)
    assert [record["n"] for _, _, record in items] == list(range(-1, 5000)) and not skipped
    assert buffer.ctx.counters["write_failures"] == 1


class AckedSender(threading.Thread):
    """Messages of 50 numbered records, Forward and PackedForward in turn, each sent until it
    is acked; `acked` holds the numbers of the records whose message was acked."""

    def __init__(self, port: int, messages: int):
        super().__init__(daemon=True)
        self.port = port
        self.messages = messages
        self.acked: set[int] = set()
        self.last_ack = time.monotonic()
        self.done = threading.Event()

    def run(self) -> None:
        i = 0
        sock = None
        unpacker = msgpack.Unpacker(raw=False)
        while i < self.messages:
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
                    unpacker = msgpack.Unpacker(raw=False)
                chunk = uuid.uuid4().hex
                numbers = range(i * 50, i * 50 + 50)
                entries = [[int(time.time()), {"n": n, "pad": PAD}] for n in numbers]
                packed = b"".join(msgpack.packb(e) for e in entries) if i % 2 else entries
                sock.sendall(msgpack.packb(["app", packed, {"chunk": chunk}]))
                reply = None
                while reply is None:
                    data = sock.recv(4096)
                    if not data:
                        raise ConnectionResetError("closed before the ack")
                    unpacker.feed(data)
                    reply = next(unpacker, None)
                assert reply == {"ack": chunk}, reply
                self.acked.update(numbers)
                self.last_ack = time.monotonic()
                i += 1
            except OSError:  # refused while restarting, reset by a kill: the message is sent again
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(0.1)
        if sock is not None:
            sock.close()
        self.done.set()

    def stalled(self, seconds: float) -> bool:
        return time.monotonic() - self.last_ack > seconds


def run(conf: Path, log: Path, **kw) -> subprocess.Popen:
    """`pipeline run CONF` with its log appended to `log` (read while it runs)."""
    with open(log, "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(conf)], stderr=err,
                                stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(ROOT)), **kw)


def start(conf: Path, log: Path, port: int) -> subprocess.Popen:
    proc = run(conf, log)
    assert wait_for(lambda: port_open(port) or proc.poll() is not None), "the relay did not start"
    assert proc.poll() is None, log.read_text()
    return proc


def delivered(out: Path) -> set[int]:
    """The numbers in a JSON-lines output; a line cut short by the full disk fails the test
    (the last one may be in the middle of its write)."""
    if not out.exists():
        return set()
    found = set()
    for line in out.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        try:
            found.add(json.loads(line)["n"])
        except ValueError:
            raise AssertionError(f"a torn line in the output: {line!r}") from None
    return found


def check_log(log: Path, runs: int = 1) -> None:
    """No traceback; the disk full is one line of the buffer, and one of the sink's retries
    (when its output is on that disk too), in each run."""
    text = log.read_text()
    assert "Traceback" not in text, text
    full = [line for line in text.splitlines() if "No space left" in line]
    buffer = [line for line in full if "buffer" in line and "cannot write" in line]
    assert 1 <= len(buffer) <= runs, text
    assert len(full) - len(buffer) <= runs, text


@pytest.mark.parametrize("kill", ["never", "while_full", "after_space_came_back"])
def test_a_relay_delivers_every_acked_record_after_its_disk_was_full(tmp_path, small_disk, kill):
    # sender -> relay (forward source -> forward sink, file buffer on the small disk) -> receiver,
    # down until the end: the relay's buffer fills the disk
    port, final_port = free_port(), free_port()
    conf, log = tmp_path / "relay.yaml", tmp_path / "relay.log"
    conf.write_text(f"""
shutdown_timeout: 5s
sources:
  in: {{type: forward, port: {port}}}
sinks:
  up:
    type: forward
    inputs: [in]
    servers: [{{host: 127.0.0.1, port: {final_port}}}]
    chunk_max_events: 500
    retry_max_interval: 0.5s
    buffer: {{type: file, path: {small_disk}/buffer}}
""")
    filler = fill(small_disk, leave=300_000)
    relay = start(conf, log, port)
    sender = AckedSender(port, messages=400)  # 20,000 records
    sender.start()
    final = None
    try:
        def held_back() -> bool:
            return "cannot write: No space left" in log.read_text() and sender.stalled(1)
        assert wait_for(lambda: held_back() or sender.done.is_set(), timeout=60), log.read_text()
        assert not sender.done.is_set(), "the disk never filled up"
        acked_while_full = len(sender.acked)
        assert 0 < acked_while_full < 20_000
        if kill == "while_full":  # recovery on a full disk
            relay.kill()
            relay.wait(timeout=10)
            relay = start(conf, log, port)
            time.sleep(1)
        filler.unlink()
        # what is appended after the space came back must stay readable, through a crash too
        assert wait_for(lambda: len(sender.acked) > acked_while_full + 5000, timeout=60), log.read_text()
        if kill == "after_space_came_back":
            relay.kill()
            relay.wait(timeout=10)
            relay = start(conf, log, port)
        assert sender.done.wait(120), f"sending did not resume: {len(sender.acked)} acked\n{log.read_text()}"
        final = Receiver(tmp_path, name="final", port=final_port)
        assert wait_for(lambda: sender.acked <= delivered(final.out), timeout=60), \
            f"{len(sender.acked - delivered(final.out))} acked records lost\n{log.read_text()}"
    finally:
        relay.terminate()
        relay.wait(timeout=20)
        if final is not None:
            final.stop()
    assert len(sender.acked) == 20_000
    check_log(log, runs=1 if kill == "never" else 2)


def test_stdin_goes_on_reading_when_the_space_is_back(tmp_path, small_disk):
    conf = tmp_path / "stdin.yaml"
    conf.write_text(f"""
sources:
  in: {{type: stdin}}
sinks:
  out:
    type: file
    inputs: [in]
    path: {small_disk}/out/out.log
    chunk_max_events: 500
    retry_max_interval: 0.2s
    buffer: {{type: file, path: {small_disk}/buffer}}
""")
    log = tmp_path / "stdin.log"
    filler = fill(small_disk, leave=300_000)
    proc = run(conf, log, stdin=subprocess.PIPE)
    lines = [json.dumps({"n": n, "pad": PAD}).encode() + b"\n" for n in range(20_000)]
    writer = threading.Thread(target=lambda: (proc.stdin.writelines(lines), proc.stdin.close()), daemon=True)
    writer.start()
    try:
        assert wait_for(lambda: "cannot write: No space left" in log.read_text(), timeout=60), log.read_text()
        time.sleep(1)
        assert writer.is_alive(), "stdin was read to its end while the disk was full"
        filler.unlink()
        writer.join(60)
        assert not writer.is_alive(), "stdin is not read any more"
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert delivered(small_disk / "out" / "out.log") == set(range(20_000)), log.read_text()
    check_log(log)
