"""Sink forward against our forward source in real processes: acks, gzip, TLS, shared_key,
failover, standby, and peers that never ack, are slow, or reset."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import msgpack
import pytest
from forward_peers import Receiver, numbered, send, sender_conf
from helpers import accept_forever, free_port, start_pipeline, wait_for


def ns(records):
    return sorted(r["n"] for r in records)


@pytest.mark.parametrize("options", ["compress: gzip", "require_ack: false", "keepalive: false",
                                     "chunk_max_events: 7"])
def test_delivers_everything(tmp_path, options):
    r = Receiver(tmp_path)
    try:
        conf = sender_conf(tmp_path, f"servers: [{{host: 127.0.0.1, port: {r.port}}}], {options}")
        result = send(conf, numbered(500))
        assert result.returncode == 0, result.stderr.decode()
        assert wait_for(lambda: len(r.records()) == 500)
        rows = r.records()
        assert ns(rows) == list(range(500)) and {x["tag"] for x in rows} == {"app.test"}
    finally:
        r.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)
    return d


def test_tls_and_shared_key(tmp_path, certs):
    r = Receiver(tmp_path, source=f"shared_key: s3cret, tls: {{cert: {certs}/cert.pem, key: {certs}/key.pem}}")
    try:
        conf = sender_conf(tmp_path, f"servers: [{{host: 127.0.0.1, port: {r.port}}}], shared_key: s3cret, "
                                     f"compress: gzip, tls: {{ca: {certs}/cert.pem, server_name: localhost}}")
        result = send(conf, numbered(100))
        assert result.returncode == 0, result.stderr.decode()
        assert wait_for(lambda: len(r.records()) == 100)
        # a client that does not trust the certificate is refused
        bad = sender_conf(tmp_path, f"servers: [{{host: 127.0.0.1, port: {r.port}}}], shared_key: s3cret, "
                                    "tls: {server_name: localhost}", name="bad.yaml")
        result = send(bad, numbered(1))
        assert result.returncode == 1 and b"CERTIFICATE_VERIFY_FAILED" in result.stderr
    finally:
        r.stop()


def test_wrong_shared_key_is_a_clear_error_naming_the_server(tmp_path):
    r = Receiver(tmp_path, source="shared_key: right")
    try:
        conf = sender_conf(tmp_path, f"servers: [{{host: 127.0.0.1, port: {r.port}}}], shared_key: wrong")
        result = send(conf, numbered(3))
        err = result.stderr.decode()
        assert result.returncode == 1
        assert f"server 127.0.0.1:{r.port}: refused the handshake: shared_key mismatch" in err
        assert err.count("error sink.fw: write failed") == 1  # on the state change, not once per retry
        assert r.records() == []
    finally:
        r.stop()


def test_failover_to_standby_and_weights(tmp_path):
    primary, standby = Receiver(tmp_path, "primary"), Receiver(tmp_path, "standby")
    dead = free_port()
    try:
        conf = sender_conf(tmp_path, f"servers: [{{host: 127.0.0.1, port: {dead}}}, "
                                     f"{{host: 127.0.0.1, port: {primary.port}}}, "
                                     f"{{host: 127.0.0.1, port: {standby.port}, standby: true}}], chunk_max_events: 10")
        assert send(conf, numbered(200)).returncode == 0
        assert wait_for(lambda: len(primary.records()) == 200)
        assert standby.records() == []  # a primary was up: the standby was never used
        primary.kill()
        assert send(conf, numbered(50, 200)).returncode == 0
        assert wait_for(lambda: len(standby.records()) == 50)
    finally:
        primary.proc.poll() is None and primary.stop()
        standby.stop()


class BadPeer:
    """A TCP server that takes data and never acks, reads slowly and acks, or resets the connection."""

    def __init__(self, mode: str):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.acked_events = 0
        self.lock = threading.Lock()
        accept_forever(self.sock, self.handle)

    def handle(self, conn):
        with conn:
            if self.mode == "reset":
                conn.recv(100)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return
            unpacker = msgpack.Unpacker(raw=False, max_buffer_size=64 << 20)
            while data := conn.recv(65536):
                self.received += len(data)
                if self.mode != "slow":
                    continue
                time.sleep(0.005)  # about 13 MB/s
                unpacker.feed(data)
                for _tag, _blob, option in unpacker:
                    with self.lock:
                        self.acked_events += option["size"]
                    conn.sendall(msgpack.packb({"ack": option["chunk"]}))


@pytest.mark.parametrize("mode", ["never_ack", "reset"])
def test_peer_that_never_acks_or_resets_keeps_the_data(tmp_path, mode):
    peer = BadPeer(mode)
    buffer = tmp_path / "buf"
    conf = sender_conf(tmp_path, f"servers: [{{host: 127.0.0.1, port: {peer.port}}}], ack_timeout: 0.5s, "
                                 f"buffer: {{type: file, path: {buffer}}}")
    started = time.monotonic()
    result = send(conf, numbered(300))
    assert time.monotonic() - started < 20  # shutdown_timeout (3s) bounds the run
    assert result.returncode == 1
    assert b"300 events not written before shutdown_timeout" in result.stderr
    assert b"kept in the file buffer for the next run" in result.stderr
    if mode == "never_ack":
        assert peer.received > 0  # it was sent, and sent again, but never counted as delivered
    # a real receiver comes up: the next run sends what the buffer kept
    r = Receiver(tmp_path)
    try:
        conf = sender_conf(tmp_path, f"servers: [{{host: 127.0.0.1, port: {r.port}}}], "
                                     f"buffer: {{type: file, path: {buffer}}}", name="again.yaml")
        assert send(conf, b"").returncode == 0
        assert wait_for(lambda: len(r.records()) == 300)
        assert ns(r.records()) == list(range(300))
        assert not list(buffer.glob("*.chunk"))
    finally:
        r.stop()


def test_weights_share_the_load_and_backoff_skips_a_failed_server():
    from helpers import make_plugin

    sink = make_plugin("sink", "forward", servers=[{"host": "a", "weight": 90}, {"host": "b", "weight": 10},
                                                   {"host": "s", "standby": True}])
    firsts = [sink._candidates()[0].host for _ in range(2000)]
    assert 0.85 < firsts.count("a") / 2000 < 0.95 and "s" not in firsts
    assert [s.host for s in sink._candidates()][-1] == "s"  # the standby comes after every primary
    sink._failed(sink.servers[0])
    assert [s.host for s in sink._candidates()] == ["b", "s"]  # a backing-off server is not tried


class AckLater:
    """A receiver that holds every ack until `hold` chunks are waiting for one (or 0.2 s
    passed), and notes the most chunks it ever had unacked at once."""

    def __init__(self, hold: int):
        self.hold, self.waiting, self.most, self.events = hold, 0, 0, 0
        self.cond = threading.Condition()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        accept_forever(self.sock, self.handle)

    def handle(self, conn):
        unpacker = msgpack.Unpacker(raw=False)
        with conn:
            while data := conn.recv(65536):
                unpacker.feed(data)
                for _tag, _blob, option in unpacker:
                    with self.cond:
                        self.waiting += 1
                        self.most = max(self.most, self.waiting)
                        self.cond.notify_all()
                        self.cond.wait_for(lambda: self.waiting >= self.hold, timeout=0.2)
                        self.events += option["size"]
                    conn.sendall(msgpack.packb({"ack": option["chunk"]}))
                    with self.cond:
                        self.waiting -= 1


@pytest.mark.parametrize("in_flight", [1, 3])
def test_several_chunks_in_flight_each_on_its_own_connection(tmp_path, in_flight):
    peer = AckLater(hold=3)
    conf = sender_conf(tmp_path, f"servers: [{{host: 127.0.0.1, port: {peer.port}}}], chunk_max_events: 10, "
                                 f"max_in_flight: {in_flight}")
    assert send(conf, numbered(90)).returncode == 0
    assert peer.events == 90 and peer.most == in_flight


def test_an_integer_msgpack_cannot_hold_is_sent_as_its_digits(tmp_path):
    """Made a string at the edge (pipeline/codecs/edge.py): it was skipped by the sink before."""
    r = Receiver(tmp_path)
    try:
        conf = sender_conf(tmp_path, f"servers: [{{host: 127.0.0.1, port: {r.port}}}]")
        data = numbered(2) + b'{"n": 2, "big": 123456789012345678901234567890}\n' + numbered(2, start=3)
        result = send(conf, data)
        assert result.returncode == 0, result.stderr.decode()
        assert wait_for(lambda: len(r.records()) == 5)
        assert ns(r.records()) == [0, 1, 2, 3, 4]
        assert [x["big"] for x in r.records() if "big" in x] == ["123456789012345678901234567890"]
    finally:
        r.stop()


class PeakRss:
    """The most memory a process had resident (VmHWM), sampled until it exits."""

    def __init__(self, pid: int):
        self.pid, self.mib = pid, 0.0
        threading.Thread(target=self.sample, daemon=True).start()

    def sample(self) -> None:
        while True:
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    lines = [line for line in f if line.startswith("VmHWM:")]
            except OSError:
                return
            if not lines:  # exited, not yet reaped
                return
            self.mib = max(self.mib, int(lines[0].split()[1]) / 1024)
            time.sleep(0.02)


@pytest.mark.parametrize("mode", ["slow", "never_ack"])
def test_a_slow_or_silent_peer_keeps_the_senders_memory_bounded(tmp_path, mode):
    # 200,000 records of 250 bytes: about 100 MiB as Python objects if the sender took them
    # all in; with a 4 MiB memory buffer, backpressure stops it reading stdin instead
    total = 200_000
    peer = BadPeer(mode)
    conf = sender_conf(tmp_path, f"servers: [{{host: 127.0.0.1, port: {peer.port}}}], ack_timeout: 60s, "
                                 "chunk_max_events: 1000, buffer: {max_bytes: 4MiB}")
    sender = start_pipeline("run", str(conf), stdin=subprocess.PIPE)
    rss = PeakRss(sender.pid)
    fed = 0

    def feed():
        nonlocal fed
        line = b'{"n": %d, "payload": "' + b"x" * 220 + b'"}\n'
        try:
            for start in range(0, total, 1000):
                sender.stdin.write(b"".join(line % i for i in range(start, start + 1000)))
                fed = start + 1000
            sender.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        if mode == "slow":
            assert wait_for(lambda: peer.acked_events == total, timeout=60), peer.acked_events
        else:
            assert wait_for(lambda: peer.received > 1 << 19, timeout=30)
            time.sleep(2)
            assert fed < total  # held back: the sender stopped reading
        assert 0 < rss.mib < 80
    finally:
        sender.kill()
        sender.wait()


def test_a_server_going_down_and_coming_back_is_logged_once_each(tmp_path):
    """The sink never failed (the other server took the events): before, only the
    recovery was logged, so nobody learnt that the server had been down."""
    down = free_port()
    other = Receiver(tmp_path, "other")
    source = "{type: exec, command: 'echo {}', shell: true, interval: 0.1s, tag: app.test}"
    # the weights have the refusing server tried first whenever it is not backing off
    conf = sender_conf(tmp_path, f"servers: [{{host: 127.0.0.1, port: {down}, weight: 1000}}, "
                                 f"{{host: 127.0.0.1, port: {other.port}, weight: 1}}], retry_max_interval: 0.2s",
                       source=source)
    proc = start_pipeline("run", str(conf))
    back = None
    try:
        assert wait_for(lambda: len(other.records()) >= 10)
        back = Receiver(tmp_path, "back", port=down)
        assert wait_for(lambda: len(back.records()) >= 5)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
        other.stop()
        back and back.stop()
    text = err.decode()
    assert proc.returncode == 0, text
    assert text.count(f"error sink.fw: server 127.0.0.1:{down} failed: Connect call failed") == 1, text
    assert text.count(f"info sink.fw: server 127.0.0.1:{down} answers again") == 1, text
    assert "write failed" not in text
