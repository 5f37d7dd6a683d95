"""Source forward: fluent-logger senders, the four modes, acks, JSON, heartbeat, bad input."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import msgpack
import pytest
from forward_peers import Receiver, talk
from helpers import event_time, wait_for

from pipeline.codecs import forward_protocol as fp


@pytest.fixture
def receiver(tmp_path):
    r = Receiver(tmp_path)
    yield r
    r.stop()


def test_fluent_logger_sync_sender(receiver):
    from fluent import sender

    s = sender.FluentSender("app", host="127.0.0.1", port=receiver.port, nanosecond_precision=True)
    for i in range(50):
        assert s.emit("sync", {"i": i, "nested": {"ü": [1, None, True]}})
    s.close()
    assert wait_for(lambda: len(receiver.records()) == 50)
    rows = receiver.records()
    assert [r["i"] for r in rows] == list(range(50)) and {r["tag"] for r in rows} == {"app.sync"}
    assert rows[0]["nested"] == {"ü": [1, None, True]} and abs(rows[0]["time"] - time.time()) < 60


def test_fluent_logger_async_sender_with_integer_times(receiver):
    from fluent import asyncsender

    s = asyncsender.FluentSender("app", host="127.0.0.1", port=receiver.port)
    for i in range(20):
        s.emit_with_time("async", 1700000000 + i, {"i": i})
    s.close()
    assert wait_for(lambda: len(receiver.records()) == 20)
    assert [r["time"] for r in receiver.records()] == [1700000000.0 + i for i in range(20)]


def test_all_modes_acked(receiver):
    t = event_time(1700000000 * 10**9 + 5)
    message = msgpack.packb(["m.tag", t, {"mode": "message"}, {"chunk": "c1"}])
    forward = msgpack.packb(["f.tag", [[t, {"mode": "forward"}], [1700000001, {"mode": "forward2"}]], {"chunk": "c2"}])
    packed = fp.packed_forward("p.tag", fp.pack_entries([("p.tag", 1700000000 * 10**9 + 7, {"mode": "packed"})]),
                               1, "c3", False)
    gz = fp.packed_forward("g.tag", fp.pack_entries([("g.tag", 1, {"mode": "gzip"})]), 1, "c4", True)
    plain = msgpack.packb(["n.tag", 1700000000, {"mode": "no ack"}])
    replies = talk(receiver.port, message + forward + packed + gz + plain, replies=4)
    assert replies == [{"ack": "c1"}, {"ack": "c2"}, {"ack": "c3"}, {"ack": "c4"}]
    assert wait_for(lambda: len(receiver.records()) == 6)
    rows = {r["mode"]: r for r in receiver.records()}
    assert rows["message"]["tag"] == "m.tag" and rows["message"]["time"] == pytest.approx(1700000000.000000005)
    assert rows["forward2"]["time"] == 1700000001.0 and rows["gzip"]["tag"] == "g.tag"


def test_json_variant(receiver):
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=5) as s:
        s.sendall(b'["j.tag", 1700000100, {"a": 1}, {"chunk": "j1"}]')
        assert json.loads(s.recv(100)) == {"ack": "j1"}
    assert wait_for(lambda: receiver.records() and receiver.records()[0]["a"] == 1)


def test_udp_heartbeat(receiver):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"\x00", ("127.0.0.1", receiver.port))
        assert s.recvfrom(16)[0] == b"\x00"


@pytest.mark.parametrize("data, reason", [
    (b"\xc1\xc1\xc1", "malformed msgpack"),
    (msgpack.packb({"not": "an array"}), "not a forward message"),
    (msgpack.packb(["t", fp.pack_entries([("t", 1, {"a": 1}), ("t", 2, {"b": 2})])[:-2], {"chunk": "x"}]),
     "ends inside an entry"),
    (msgpack.packb(["t", b"not gzip", {"chunk": "x", "compressed": "gzip"}]), "not gzip"),
    (msgpack.packb(["t", msgpack.ExtType(5, b"12345678"), {"a": 1}, {"chunk": "x"}]), "unknown msgpack extension"),
    (msgpack.packb(["t", 1, {"a": 1}, {"chunk": "x"}])[:-3], "in the middle of a message"),
])
def test_malformed_input_closes_only_that_connection(receiver, data, reason):
    got = talk(receiver.port, data, replies=1, half_close=True)
    assert got == []  # no ack: the sender has to send again
    # the pipeline goes on: a good message on a new connection is acked
    assert talk(receiver.port, msgpack.packb(["ok", 1, {"after": reason}, {"chunk": "ok"}])) == [{"ack": "ok"}]
    assert wait_for(lambda: any(r.get("after") == reason for r in receiver.records()))
    assert not any(r.get("a") == 1 for r in receiver.records())
    err = receiver.stop()
    receiver.start()
    assert "connection closed: " in err and reason in err and "Traceback" not in err


def test_oversized_message(tmp_path):
    r = Receiver(tmp_path, source="max_message_bytes: 4KiB")
    try:
        assert talk(r.port, msgpack.packb(["t", 1, {"big": "x" * 10000}, {"chunk": "x"}])) == []
        assert talk(r.port, msgpack.packb(["t", 1, {"small": 1}, {"chunk": "y"}])) == [{"ack": "y"}]
    finally:
        err = r.stop()
    assert "larger than max_message_bytes" in err


def test_shared_key_and_users(tmp_path):
    r = Receiver(tmp_path, source="shared_key: k3y, users: [{username: alice, password: wonderland}]")

    async def session(key: str, user: str, password: str):
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        u = fp.unpacker()
        u.feed(await reader.read(1000))
        [_, hello] = next(u)
        writer.write(fp.ping("client", "salt", fp.as_bytes(hello["nonce"]), key, fp.as_bytes(hello["auth"]), user, password))
        replies: list = []

        async def read_until(n: int) -> None:
            while len(replies) < n:
                data = await reader.read(1000)
                if not data:
                    break
                u.feed(data)
                replies.extend(u)

        # the message only after the PONG: a refused client's unread bytes would make the
        # server's close a reset, which may discard the PONG before it is read
        await read_until(1)
        if replies and replies[0][1]:
            writer.write(msgpack.packb(["t", 1, {"user": user}, {"chunk": "a"}]))
            await read_until(2)
        writer.close()
        return replies

    try:
        ok = asyncio.run(session("k3y", "alice", "wonderland"))
        assert ok[0][:2] == ["PONG", True] and ok[1] == {"ack": "a"}
        assert ok[0][4] == fp.shared_key_digest("salt", ok[0][3], b"", "k3y") or len(ok[0][4]) == 128
        assert asyncio.run(session("wrong", "alice", "wonderland"))[0][:3] == ["PONG", False, "shared_key mismatch"]
        assert asyncio.run(session("k3y", "alice", "nope"))[0][:3] == ["PONG", False, "username/password mismatch"]
        assert wait_for(lambda: [x["user"] for x in r.records()] == ["alice"])
    finally:
        r.stop()


def test_a_filter_after_the_source_gets_packed_runs_decoded(tmp_path):
    r = Receiver(tmp_path)
    r.stop()
    r.conf.write_text(r.conf.read_text().replace("inputs: [in]", "inputs: [ren]") +
                      "filters:\n  ren: {type: rename, inputs: [in], fields: {old: new}}\n")
    r.start()
    try:
        events = [("p.tag", 1700000000 * 10**9 + i, {"old": i}) for i in range(5)]
        message = fp.packed_forward("p.tag", fp.pack_entries(events), 5, "c1", False)
        assert talk(r.port, message) == [{"ack": "c1"}]
        assert wait_for(lambda: len(r.records()) == 5)
        assert [row["new"] for row in r.records()] == list(range(5))
    finally:
        r.stop()


def test_sinks_match_packed_runs_by_tag(tmp_path):
    r = Receiver(tmp_path)
    r.stop()
    other = r.dir / "other.jsonl"
    r.conf.write_text(r.conf.read_text().replace("inputs: [in],", "inputs: [in], match: 'app.**',") +
                      f"  rest: {{type: file, inputs: [in], match: 'sys.*', path: {other}}}\n")
    r.start()
    try:
        app = fp.packed_forward("app.web", fp.pack_entries([("app.web", 1, {"to": "out"})] * 3), 3, "a", False)
        sys_ = fp.packed_forward("sys.kernel", fp.pack_entries([("sys.kernel", 1, {"to": "rest"})] * 2), 2, "b",
                                 False)
        assert talk(r.port, app + sys_, replies=2) == [{"ack": "a"}, {"ack": "b"}]
        assert wait_for(lambda: len(r.records()) == 3 and other.exists() and len(other.read_text().splitlines()) == 2)
        assert {row["to"] for row in r.records()} == {"out"} and '"rest"' in other.read_text()
    finally:
        r.stop()
