"""The forward protocol codec, checked against the bytes and digests a real fluentd 1.16 produced
(docs/forward-protocol.md)."""

from __future__ import annotations

import gzip

import msgpack
import pytest
from helpers import event_time, gunzip

from pipeline.codecs import forward_protocol as fp
from pipeline.engine.context import Context
from pipeline.event import Packed


def test_event_time_bytes_as_fluentd_writes_them():
    message = msgpack.packb(["t", event_time(1700000000 * 10**9 + 5), {"k": "v"}, {"chunk": "abc"}])
    assert message.hex(" ") == ("94 a1 74 d7 00 65 53 f1 00 00 00 00 05 81 a1 6b a1 76 81 a5 63 68 75 6e 6b "
                                "a3 61 62 63")
    u = fp.unpacker()
    u.feed(message)
    [[tag, t, record, option]] = list(u)
    assert t == 1700000000 * 10**9 + 5 and type(t) is fp.NsTime
    assert fp.to_ns(t, 0) == t and fp.to_ns(1700000000, 0) == 1700000000 * 10**9 and fp.to_ns(0, 42) == 42


def test_other_extensions_are_refused():
    u = fp.unpacker()
    u.feed(msgpack.packb(msgpack.ExtType(5, b"12345678")))
    with pytest.raises(fp.ProtocolError):
        list(u)
    # msgpack's own Timestamp (ext -1), which fluentd cannot read, is not a time here either
    u = fp.unpacker()
    u.feed(msgpack.packb(msgpack.Timestamp(1, 0)))
    assert fp.to_ns(next(u), 0) is None


def test_packed_forward_round_trip_and_gzip():
    events = [("app", 10**18 + i, {"i": i, "s": "ü"}) for i in range(3)]
    for compress in (False, True):
        u = fp.unpacker()
        u.feed(fp.packed_forward("app", fp.pack_entries(events), 3, "c1", compress))
        [[tag, blob, option]] = list(u)
        assert tag == "app" and option == {"size": 3, "compressed": "gzip" if compress else "text", "chunk": "c1"}
        entries = fp.decode_entries(gunzip(fp.as_bytes(blob), 10**6) if compress else fp.as_bytes(blob))
        assert [(t, r) for t, r in entries] == [(t, r) for _, t, r in events]


def test_truncated_blob_is_refused_not_partly_taken():
    blob = fp.pack_entries([("t", 1, {"a": 1}), ("t", 2, {"b": 2})])
    with pytest.raises(fp.ProtocolError, match="ends inside an entry"):
        fp.decode_entries(blob[:-1])


def test_several_gzip_members_and_bad_gzip():
    a, b = fp.pack_entries([("t", 1, {"a": 1})]), fp.pack_entries([("t", 2, {"b": 2})])
    assert len(fp.decode_entries(gunzip(gzip.compress(a) + gzip.compress(b), 10**6))) == 2
    with pytest.raises(fp.ProtocolError, match="not gzip"):
        gunzip(a, 10**6)
    with pytest.raises(fp.ProtocolError, match="cut off"):
        gunzip(gzip.compress(a)[:-4], 10**6)
    with pytest.raises(fp.ProtocolError, match="inflates past"):
        gunzip(gzip.compress(b"\x00" * 100_000), 1000)


def test_handshake_digests_match_the_captured_fluentd_exchange():
    nonce = bytes.fromhex("64d1c665e82fd2a41b208f18c739000a")
    auth = bytes.fromhex("23cdb11dadb7840855b1e42f7095f742")
    salt = "d5cb13d60f3b3098dac9c1a3a1b97a91"
    key = "s3cr3t-key"
    assert fp.shared_key_digest(salt, "client-user.example", nonce, key) == (
        "9adca42d40ca708c7ae5b286cc1aa2644940b7a248bf52ca000ff9d153b11d2c87c075e60f0e90b615e76907db04d10f401"
        "b8b035b2ca832e3f24c227cb9e92a")
    assert fp.password_digest(auth, "alice", "wonderland") == (
        "c7e6606e23365167b7ab4c1217508bb29fc465c8ca7a665ce6d580a1a253128dcfe1a89260eacbb712b7fa6660d95796d8"
        "abc203deb5538591de38013dea140d")
    assert fp.shared_key_digest(salt, "server-user.example", nonce, key) == (
        "e0983d76733b08231e4209e3a7e972553d0054817eb1b579291d2d226ffab078305d4a0e0571f8cf1f3f176b81d2a6b4b9c"
        "458207ca51ce6cb1a1361c2dcf9eb")


def test_count_entries_walks_eventtime_entries_without_decoding():
    events = [("t", 10**18 + i, {"i": i, "nested": {"a": [1, 2]}}) for i in range(50)]
    blob = fp.pack_entries(events)
    assert fp.count_entries(blob) == 50 and fp.count_entries(b"") == 0
    assert fp.unpack_packed(Packed("t", blob, 50)) == (events, [])
    with pytest.raises(fp.ProtocolError, match="ends inside an entry .after 49 whole"):
        fp.count_entries(blob[:-1])
    with pytest.raises(fp.ProtocolError, match="do not decode"):
        fp.count_entries(blob[:11] + b"\x81\xc1")  # 0xc1 is no msgpack type


@pytest.mark.parametrize("entry", [
    [1700000000, {"a": 1}],  # integer seconds: to be scaled to ns
    [1700000000.5, {"a": 1}],  # a float, which fluentd >= 1.19 drops: not sent on as it is
    [event_time(1), "not a map"],
])
def test_a_blob_in_another_form_is_left_for_decoding(entry):
    blob = msgpack.packb(entry) + fp.pack_entries([("t", 1, {"ok": 1})])
    assert fp.count_entries(blob) is None


def test_later_entries_in_another_form_are_fixed_or_left_out_when_decoded():
    blob = (fp.pack_entries([("t", 5, {"ok": 1})]) + msgpack.packb([1700000000, {"int": 1}])
            + msgpack.packb([event_time(6), "not a map"]) + msgpack.packb(7))
    assert fp.count_entries(blob) == 4
    events, bad = fp.unpack_packed(Packed("t", blob, 4))
    assert events == [("t", 5, {"ok": 1}), ("t", 1700000000 * 10**9, {"int": 1})] and len(bad) == 2
    assert all(type(e[1]) is int for e in events)


def test_a_packed_run_that_does_not_decode_is_reported_and_skipped():
    good = Packed("t", fp.pack_entries([("t", 5, {"a": 1})]), 1)
    bad_record = msgpack.packb([event_time(6), {"x": msgpack.ExtType(9, b"?")}])
    assert fp.count_entries(bad_record) == 1  # its framing is fine; its record is not
    errors: list = []
    ctx = Context("c", "sink", on_error=errors.append)
    batch = fp.unpack_items([("t", 4, {"plain": 1}), Packed("t", bad_record, 1, "10.0.0.1:5"), good], ctx)
    assert batch == [("t", 4, {"plain": 1}), ("t", 5, {"a": 1})]
    assert ctx.counters["protocol_error"] == 1 and "unknown msgpack extension type 9" in errors[0][2]["error"]
    assert errors[0][2]["origin"] == "10.0.0.1:5"
