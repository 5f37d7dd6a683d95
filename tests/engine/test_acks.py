"""End-to-end acknowledgements: a tail position moves only once its lines are delivered (by
the sink for a memory buffer, on disk for a file buffer, or dropped on purpose), positions
are committed in order, a stalled sink stalls the tail, and forward's `ack: delivery`."""

from __future__ import annotations

import json
import socket
import time

import msgpack
from forward_peers import Receiver
from helpers import free_port, port_open, run_pipeline, start_pipeline, wait_for

from pipeline.engine.ack import Ack, InOrder


def _offsets(positions) -> list[int]:
    if not positions.exists():
        return []
    return [json.loads(line)["offset"] for line in positions.read_text().splitlines()]


def _tail_to_forward(tmp_path, log, port: int, buffer: str = "") -> tuple:
    conf = tmp_path / "tail.yaml"
    conf.write_text(
        f"state_dir: {tmp_path / 'state'}\nshutdown_timeout: 1s\n"
        f"sources:\n  t: {{type: tail, path: {log}, read_from_head: true, refresh_interval: 0.3s}}\n"
        f"sinks:\n  fw: {{type: forward, inputs: [t], servers: [{{host: 127.0.0.1, port: {port}}}], "
        f"retry_max_interval: 0.3s{', buffer: ' + buffer if buffer else ''}}}\n")
    return conf, tmp_path / "state" / "t.positions"


def test_memory_buffer_position_waits_for_the_sink_and_a_kill_loses_nothing(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("".join(f"{i:08d} line\n" for i in range(500)))
    port = free_port()
    conf, positions = _tail_to_forward(tmp_path, log, port)
    proc = start_pipeline("run", str(conf))
    # read, in the memory buffer, not delivered: the position stays where it was
    assert wait_for(lambda: _offsets(positions) == [0])
    time.sleep(2)
    assert _offsets(positions) == [0]
    proc.kill()
    proc.wait()
    receiver = Receiver(tmp_path, port=port)
    try:
        proc = start_pipeline("run", str(conf))
        assert wait_for(lambda: len(receiver.records()) >= 500), proc.stderr
        assert wait_for(lambda: _offsets(positions) == [log.stat().st_size])
        proc.terminate()
        proc.wait(timeout=20)
        assert sorted({int(r["message"].split()[0]) for r in receiver.records()}) == list(range(500))
    finally:
        receiver.stop()


def test_file_buffer_position_moves_once_on_disk(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("".join(f"{i:08d} line\n" for i in range(300)))
    port = free_port()
    conf, positions = _tail_to_forward(tmp_path, log, port, f"{{type: file, path: {tmp_path / 'buf'}}}")
    proc = start_pipeline("run", str(conf))
    # nobody receives, but the lines are fsynced in the file buffer: delivered, as far as tail goes
    assert wait_for(lambda: _offsets(positions) == [log.stat().st_size]), proc.stderr
    proc.kill()
    proc.wait()
    receiver = Receiver(tmp_path, port=port)
    try:
        proc = start_pipeline("run", str(conf))
        assert wait_for(lambda: len(receiver.records()) >= 300)
        proc.terminate()
        proc.wait(timeout=20)
        assert sorted(int(r["message"].split()[0]) for r in receiver.records()) == list(range(300))
    finally:
        receiver.stop()


def test_lines_dropped_on_purpose_or_sent_to_errors_count_as_delivered(tmp_path):
    log = tmp_path / "app.log"
    log.write_text('{"n": 1}\nnot json\n{"n": 2}\n')
    conf = tmp_path / "c.yaml"
    errors = tmp_path / "errors.jsonl"
    port = free_port()  # nobody listens: a line that reached this sink would hold the position
    conf.write_text(
        f"state_dir: {tmp_path / 'state'}\nshutdown_timeout: 1s\n"
        f"sources:\n  t: {{type: tail, path: {log}, read_from_head: true, format: json, tag: app}}\n"
        f"sinks:\n  fw: {{type: forward, inputs: [t], match: other.*, servers: [{{host: 127.0.0.1, port: {port}}}]}}\n"
        f"  errors: {{type: file, inputs: [_errors], path: {errors}}}\n")
    done = run_pipeline("run", "--once", str(conf), timeout=30)
    assert done.returncode == 0, done.stderr.decode()
    assert _offsets(tmp_path / "state" / "t.positions") == [log.stat().st_size]
    assert "not json" in errors.read_text()


def test_stalled_sink_stalls_the_tail_through_the_buffer_limit(tmp_path):
    log = tmp_path / "big.log"
    line = "x" * 100
    with open(log, "w") as f:
        for i in range(300_000):  # 32 MB: as records, several times that
            f.write(f"{i:08d} {line}\n")
    port = free_port()
    conf, positions = _tail_to_forward(tmp_path, log, port, "{max_bytes: 2MiB}")
    proc = start_pipeline("run", str(conf))
    try:
        assert wait_for(lambda: _offsets(positions) == [0])
        time.sleep(3)
        status = open(f"/proc/{proc.pid}/status").read()
        rss = int(status.split("VmRSS:")[1].split()[0]) * 1024
        assert rss < 90 * 2**20, f"{rss / 2**20:.0f} MiB resident: the tail read on past the buffer's limit"
        assert _offsets(positions) == [0]
    finally:
        proc.kill()
        proc.wait()


def test_in_order_commit_waits_for_earlier_batches():
    applied: list[int] = []
    order = InOrder(applied.append)
    first, second, third = order.ack(1), order.ack(2), order.ack(3)
    for ack in (first, second, third):
        ack.hold()  # a sink has each
        ack.release()  # the source's own hold
    third.release()
    second.release()
    assert applied == []  # the first is still on its way
    first.release()
    assert applied == [1, 2, 3] and order.pending == 0


def test_a_lost_ack_never_fires():
    fired: list[bool] = []
    ack = Ack(lambda: fired.append(True))
    ack.lose()
    ack.release()
    assert fired == [] and not ack.done


def _forward_message(chunk: str) -> bytes:
    return msgpack.packb(["app", 1700000000, {"n": 1}, {"chunk": chunk}])


def _relay(tmp_path, ack: str, downstream: int):
    """A forward source relaying to a forward sink at `downstream`; its port."""
    port = free_port()
    conf = tmp_path / f"relay-{ack}.yaml"
    conf.write_text(
        f"shutdown_timeout: 1s\nsources:\n  in: {{type: forward, port: {port}, ack: {ack}}}\n"
        f"sinks:\n  fw: {{type: forward, inputs: [in], retry_max_interval: 0.3s, "
        f"servers: [{{host: 127.0.0.1, port: {downstream}}}]}}\n")
    proc = start_pipeline("run", str(conf))
    assert wait_for(lambda: port_open(port)), proc.stderr
    return proc, port


def test_forward_ack_delivery_waits_for_the_next_hop(tmp_path):
    downstream = free_port()
    relay, port = _relay(tmp_path, "delivery", downstream)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(_forward_message("c1"))
            s.settimeout(2)
            try:
                early = s.recv(65536)
            except TimeoutError:
                early = b""
            assert early == b"", "acked before the next hop had the event"
            final = Receiver(tmp_path, name="final", port=downstream)
            try:
                s.settimeout(20)
                assert msgpack.unpackb(s.recv(65536)) == {"ack": "c1"}
                assert wait_for(lambda: len(final.records()) == 1)
            finally:
                final.stop()
    finally:
        relay.terminate()
        relay.wait(timeout=20)


def test_forward_ack_buffer_acks_once_buffered(tmp_path):
    relay, port = _relay(tmp_path, "buffer", free_port())
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(_forward_message("c1"))
            assert msgpack.unpackb(s.recv(65536)) == {"ack": "c1"}
    finally:
        relay.terminate()
        relay.wait(timeout=20)
