"""Delivery through failures, with real processes on both ends: nothing accepted is lost.

- the receiving pipeline is SIGKILLed mid-stream and started again later;
- the sending pipeline is SIGKILLed with a file buffer full of unsent events and started again;
- a relay (forward source -> forward sink) is SIGKILLed holding what it acked, undecoded.
Records are counted end to end; duplicates are allowed (at-least-once) and reported.
"""

from __future__ import annotations

import collections
import signal
import threading
import time

from forward_peers import Receiver, numbered, send, sender_conf
from helpers import free_port, start_pipeline, wait_for

from pipeline.buffer.file import read_chunk
from pipeline.event import Packed


def test_receiver_killed_mid_stream_and_restarted(tmp_path):
    # the receiver acks once events are in its sink's buffer: a file buffer, so a kill loses none
    receiver = Receiver(tmp_path, sink=f"buffer: {{type: file, path: {tmp_path / 'recv-buf'}}}")
    conf = sender_conf(tmp_path, f"servers: [{{host: 127.0.0.1, port: {receiver.port}}}], ack_timeout: 1s, "
                                 f"retry_max_interval: 0.5s, buffer: {{type: file, path: {tmp_path / 'buf'}}}")
    conf.write_text(conf.read_text().replace("shutdown_timeout: 3s", "shutdown_timeout: 30s"))
    sender = start_pipeline("run", str(conf), stdin=-1)
    total, step = 3000, 100

    def feed():
        for start in range(0, total, step):
            sender.stdin.write(numbered(step, start))
            sender.stdin.flush()
            time.sleep(0.02)
        sender.stdin.close()

    writer = threading.Thread(target=feed)
    writer.start()
    assert wait_for(lambda: len(receiver.records()) > 300)
    receiver.kill()  # mid-stream: acks may be lost, events in its memory buffer are lost
    time.sleep(1.0)
    receiver.start()
    writer.join()
    assert sender.wait(timeout=60) == 0, sender.stderr.read().decode()
    counts = collections.Counter(r["n"] for r in receiver.records())
    assert set(counts) == set(range(total)), f"lost: {sorted(set(range(total)) - set(counts))[:20]}"
    duplicates = sum(c - 1 for c in counts.values())
    print(f"{total} events, {duplicates} duplicates after the receiver's crash")
    receiver.stop()


def test_sender_killed_with_a_file_buffer_and_restarted(tmp_path):
    buffer = tmp_path / "buf"
    port = free_port()  # no receiver yet: nothing can be delivered
    conf = sender_conf(tmp_path, f"servers: [{{host: 127.0.0.1, port: {port}}}], retry_max_interval: 0.5s, "
                                 f"buffer: {{type: file, path: {buffer}}}")
    sender = start_pipeline("run", str(conf), stdin=-1)
    sender.stdin.write(numbered(2000))
    sender.stdin.flush()

    def buffered() -> int:
        return sum(len(read_chunk(p)[0]) for p in buffer.glob("*.chunk"))

    assert wait_for(lambda: buffered() == 2000)
    sender.send_signal(signal.SIGKILL)
    sender.wait(timeout=10)
    receiver = Receiver(tmp_path, port=port)
    try:
        again = start_pipeline("run", str(conf), stdin=-1)
        again.stdin.close()  # nothing new: only what the first run left
        assert again.wait(timeout=60) == 0
        err = again.stderr.read()
        assert b"2000 events left in" in err
        assert sorted(r["n"] for r in receiver.records()) == list(range(2000))
        assert not list(buffer.glob("*.chunk"))
    finally:
        receiver.stop()


def test_relay_keeps_packed_runs_undecoded_through_a_crash(tmp_path):
    # agent -> relay (forward source -> forward sink, file buffer) -> fluentd stand-in
    final_port = free_port()  # down at first: the relay has to keep everything
    relay = Receiver(tmp_path, name="relay")
    relay_buffer = tmp_path / "relay-buf"
    relay.conf.write_text(
        f"sources:\n  in: {{type: forward, port: {relay.port}}}\n"
        f"sinks:\n  up: {{type: forward, inputs: [in], servers: [{{host: 127.0.0.1, port: {final_port}}}], "
        f"retry_max_interval: 0.5s, buffer: {{type: file, path: {relay_buffer}}}}}\n")
    relay.stop()
    relay.start()
    conf = sender_conf(tmp_path, f"servers: [{{host: 127.0.0.1, port: {relay.port}}}], chunk_max_events: 100")
    result = send(conf, numbered(1000))
    assert result.returncode == 0, result.stderr.decode()  # every chunk acked by the relay
    # acked means on the relay's disk: as the PackedForward runs that came, not decoded events
    items = [item for path in sorted(relay_buffer.glob("*.chunk")) for item in read_chunk(path)[0]]
    assert items and all(isinstance(item, Packed) for item in items)
    assert sum(item.count for item in items) == 1000
    relay.kill()
    relay.start()  # recovers its chunks
    final = Receiver(tmp_path, name="final", port=final_port)
    try:
        assert wait_for(lambda: len(final.records()) >= 1000, timeout=30)
        rows = final.records()
        assert sorted(r["n"] for r in rows) == list(range(1000)) and {r["tag"] for r in rows} == {"app.test"}
        assert wait_for(lambda: not list(relay_buffer.glob("*.chunk")))  # deleted once acked
    finally:
        final.stop()
        relay.stop()
