"""Source forward under abuse: gzip bombs of tiny members, connection floods, idle and
trickling peers, chunk ids that are not UTF-8. Each test then sends 100 good records
and checks that they all arrive, and how much memory the receiver took."""

from __future__ import annotations

import gzip
import json
import resource
import socket
import threading
import time

import msgpack
import pytest
from forward_peers import Receiver
from helpers import event_time, wait_for

from pipeline.codecs import forward_protocol as fp

MiB = 1024 * 1024


def acked(port: int, data: bytes, chunk: str, timeout: float = 20) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        u = msgpack.Unpacker(raw=False)
        while True:
            got = s.recv(65536)
            if not got:
                return False
            u.feed(got)
            for reply in u:
                if reply == {"ack": chunk}:
                    return True


def good_records(port: int, start: int = 0) -> None:
    entries = fp.pack_entries([("good", 1700000000 * 10**9, {"n": i}) for i in range(start, start + 100)])
    assert acked(port, fp.packed_forward("good", entries, 100, "good", False), "good")


def arrived(r: Receiver, start: int = 0) -> bool:
    return {row["n"] for row in r.records() if row["tag"] == "good"} >= set(range(start, start + 100))


def test_gzip_of_many_tiny_members_is_inflated_in_linear_time_while_others_are_served(tmp_path):
    r = Receiver(tmp_path)
    try:
        # 400,000 empty members (8 MB) and the one that holds the entries: each member's end
        # copied the rest of the blob, 20 s of a blocked event loop at 200,000
        entries = fp.pack_entries([("bomb", 1, {"in": "bomb"})])
        blob = gzip.compress(b"", 1) * 400_000 + gzip.compress(entries)
        bomb = msgpack.packb(["bomb", blob, {"compressed": "gzip", "size": 1, "chunk": "bomb"}])
        done: dict[str, float] = {}

        def send_bomb() -> None:
            assert acked(r.port, bomb, "bomb", timeout=60)
            done["bomb"] = time.monotonic()

        sender = threading.Thread(target=send_bomb)
        started = time.monotonic()
        sender.start()
        time.sleep(0.3)  # the bomb is being inflated: another sender is served meanwhile
        good_records(r.port)
        done["good"] = time.monotonic()
        sender.join(60)
        assert "bomb" in done and done["bomb"] - started < 10
        assert done["good"] < done["bomb"], "the other sender waited for the whole blob"
        assert wait_for(lambda: arrived(r) and any(row.get("in") == "bomb" for row in r.records()))
        assert r.peak_memory() < 200 * MiB
    finally:
        r.stop()


def _fd_limit(n: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


def test_idle_connections_past_the_fd_limit_do_not_lock_out_a_sender(tmp_path):
    # 600 idle connections against an open file limit of 512: accept() failed with EMFILE
    # for everyone, a traceback each time, until the idle ones left
    r = Receiver(tmp_path, preexec_fn=_fd_limit(512))
    idle = []
    try:
        for _ in range(600):
            idle.append(socket.create_connection(("127.0.0.1", r.port), timeout=5))
        time.sleep(0.5)
        good_records(r.port)
        assert wait_for(lambda: arrived(r))
        assert r.peak_memory() < 200 * MiB
    finally:
        for s in idle:
            s.close()
        err = r.stop()
    assert "max_connections 1000 lowered to 148" in err
    assert "Traceback" not in err and "out of system resource" not in err
    assert err.count("max_connections): closed the one from") == 1  # one line a minute


def test_past_max_connections_the_longest_idle_one_is_closed(tmp_path):
    r = Receiver(tmp_path, source="max_connections: 5")
    try:
        idle = [socket.create_connection(("127.0.0.1", r.port), timeout=5) for _ in range(5)]
        time.sleep(0.3)
        good_records(r.port)
        idle[0].settimeout(5)
        assert idle[0].recv(1) == b""  # the oldest was closed for the new one
        assert wait_for(lambda: arrived(r))
        for s in idle:
            s.close()
    finally:
        err = r.stop()
    assert "5 connections (max_connections): closed the one from" in err


def test_a_connection_that_sends_nothing_is_closed_after_idle_timeout(tmp_path):
    r = Receiver(tmp_path, source="idle_timeout: 500ms")
    try:
        with socket.create_connection(("127.0.0.1", r.port), timeout=10) as s:
            started = time.monotonic()
            assert s.recv(1) == b""
            assert time.monotonic() - started < 3
        with socket.create_connection(("127.0.0.1", r.port), timeout=10) as s:
            s.sendall(msgpack.packb(["t", 1, {"a": 1}])[:-1])  # half a message, then nothing
            assert s.recv(1) == b""
        good_records(r.port)
        assert wait_for(lambda: arrived(r))
    finally:
        r.stop()


def _str32(raw: bytes) -> bytes:
    return b"\xdb" + len(raw).to_bytes(4, "big") + raw


def test_a_chunk_id_that_is_not_utf8_is_acked_as_it_came(tmp_path):
    r = Receiver(tmp_path)
    chunk = b"\xff\xfe-not-utf8"
    try:
        message = (b"\x94" + msgpack.packb("t") + msgpack.packb(event_time(10**18)) + msgpack.packb({"a": 1})
                   + b"\x81\xa5chunk" + _str32(chunk))
        with socket.create_connection(("127.0.0.1", r.port), timeout=10) as s:
            s.sendall(message)
            assert s.recv(100) == b"\x81\xa3ack" + bytes((0xA0 | len(chunk),)) + chunk
        with socket.create_connection(("127.0.0.1", r.port), timeout=10) as s:
            s.sendall(b'["j", 1700000000, {"a": 2}, {"chunk": "' + chunk + b'"}]')
            assert s.recv(100) == b'{"ack": "' + chunk + b'"}'
        good_records(r.port)
        assert wait_for(lambda: arrived(r) and {row.get("a") for row in r.records()} >= {1, 2})
    finally:
        err = r.stop()
    assert "Traceback" not in err


def test_json_split_inside_a_utf8_character_and_trickled(tmp_path):
    r = Receiver(tmp_path)
    text = "ü€😀" * 10
    message = json.dumps(["j", 1700000000, {"text": text}, {"chunk": "j1"}], ensure_ascii=False).encode()
    big = json.dumps(["j", 1700000000, {"big": ["x" * 100] * 20_000}, {"chunk": "j2"}]).encode()
    try:
        with socket.create_connection(("127.0.0.1", r.port), timeout=30) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(message)):  # one read per byte, as far as the receiver keeps up
                s.sendall(message[i:i + 1])
                time.sleep(0.001)
            assert json.loads(s.recv(100)) == {"ack": "j1"}
            # 2 MB in 1 KB pieces: the whole text was parsed again after each read
            started = time.monotonic()
            for i in range(0, len(big), 1024):
                s.sendall(big[i:i + 1024])
                time.sleep(0.0005)
            assert json.loads(s.recv(100)) == {"ack": "j2"}
            took = time.monotonic() - started
        assert took < 10
        good_records(r.port)
        assert wait_for(lambda: arrived(r) and any(row.get("text") == text for row in r.records()))
        assert r.peak_memory() < 300 * MiB
    finally:
        r.stop()


@pytest.mark.parametrize("data", [b"[" * 100_000, b'["t", 1, {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]"],
                         ids=["unclosed", "closed"])
def test_json_nested_deeply_closes_only_that_connection(tmp_path, data):
    r = Receiver(tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", r.port), timeout=10) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            assert s.recv(100) == b""
        good_records(r.port)
        assert wait_for(lambda: arrived(r))
    finally:
        err = r.stop()
    assert "connection closed" in err and "Traceback" not in err


def test_a_flood_of_failing_handshakes_is_one_log_line_without_traceback(tmp_path):
    # a PING whose host name is not UTF-8: its digest raised UnicodeEncodeError out of the
    # connection handler, a traceback per connection
    r = Receiver(tmp_path, source="shared_key: k3y")
    try:
        for _ in range(50):
            with socket.create_connection(("127.0.0.1", r.port), timeout=10) as s:
                u = fp.unpacker()
                u.feed(s.recv(1000))
                [_, hello] = next(u)
                ping = msgpack.packb(["PING", "HOST", "salt", "0" * 128, "", ""]).replace(b"\xa4HOST", b"\xa4\xff\xfe\xfd\xfc")
                s.sendall(ping)
                u.feed(s.recv(1000))
                assert next(u)[:2] == ["PONG", False]
        with socket.create_connection(("127.0.0.1", r.port), timeout=10) as s:
            u = fp.unpacker()
            u.feed(s.recv(1000))
            [_, hello] = next(u)
            s.sendall(fp.ping("client", "salt", fp.as_bytes(hello["nonce"]), "k3y", b"", "", "")
                      + msgpack.packb(["good", 1, {"n": 0}, {"chunk": "g"}]))
            replies = []
            while len(replies) < 2:
                u.feed(s.recv(1000))
                replies += list(u)
            assert replies[1] == {"ack": "g"}
        assert wait_for(lambda: any(row.get("n") == 0 for row in r.records()))
    finally:
        err = r.stop()
    assert "Traceback" not in err
    assert err.count("shared_key mismatch") == 1, err
