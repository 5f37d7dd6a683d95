"""Poison records (issue 11, point 1): a record no sink can write is quarantined to
`_errors` and never retried; the records beside it and after it are written."""

from __future__ import annotations

import msgpack
import pytest
from forward_peers import talk
from helpers import wait_for
from poison_peer import T0, Relay, entry, good_blob, packed_message

#: a forward relay with a file buffer: python, msgpack, the buffers (measured about 60 MiB)
PEAK_RSS = 150 * 1024 * 1024

DEEP = b"\x81\xa1a" + b"\x91" * 1000 + b"\x01"  # {"a": [[[... 1 ...]]]}, 1,000 deep

#: the record as msgpack bytes, and what is written of it (None: it goes to _errors)
POISON = {
    "map_key": (b"\x81" + msgpack.packb({1: 1}) + b"\x01", {'{"1":1}': 1}),  # {{1: 1}: 1}
    "list_key": (b"\x81\x92\x01\x02\x01", {"[1,2]": 1}),  # {[1, 2]: 1}
    "bin_key": (b"\x81\xc4\x01k\x01", {"k": 1}),  # {b"k": 1}
    "bad_utf8_value": (b"\x81\xa1v\xa2\xff\xfe", {"v": "\ufffd\ufffd"}),
    "bad_utf8_key": (b"\x81\xa2\xff\xfe\x01", {"\ufffd\ufffd": 1}),
    "deep": (DEEP, None),
}


@pytest.mark.parametrize("name", sorted(POISON))
def test_a_poison_entry_beside_good_ones_does_not_stop_the_sink(tmp_path, name):
    relay = Relay(tmp_path)
    try:
        # the poison between 99 good entries of one PackedForward, then 100 more in another
        data, written = POISON[name]
        blob = good_blob(50) + entry(data) + good_blob(49, start=50)
        acks = talk(relay.port, packed_message("app", blob, 100, "bad") +
                    packed_message("app", good_blob(100, start=1000), 100, "good"), replies=2)
        assert acks == [{"ack": "bad"}, {"ack": "good"}]
        want = list(range(99)) + list(range(1000, 1100))
        assert wait_for(lambda: relay.good_numbers() == want), relay.good_numbers()[-5:]
        assert relay.peak_rss() < PEAK_RSS
    finally:
        err = relay.stop()
    assert "Traceback" not in err, err
    others = [{k: v for k, v in r.items() if k != "time"} for r in relay.records() if "n" not in r]
    errors = relay.error_records()
    if written is not None:  # normalised at the edge: keys made strings, U+FFFD
        assert others == [written] and errors == []
    else:  # no sink could write it: quarantined, described so that any sink can
        assert others == [] and len(errors) == 1, errors
        assert errors[0]["component"] == "out" and errors[0]["tag"] == "app"
        assert errors[0]["kind"] == "poison_record" and "not retried" in errors[0]["error"]
        assert errors[0]["sample"].startswith("{'a': [[[[")


def test_integer_time_past_2106_is_refused_not_retried(tmp_path):
    """An integer time of 2**40 s: no EventTime holds it and iso8601 cannot print it."""
    relay = Relay(tmp_path)
    try:
        blob = good_blob(10) + b"\x92" + msgpack.packb(2 ** 40) + msgpack.packb({"late": 1}) + good_blob(89, 10)
        assert talk(relay.port, packed_message("app", blob, 100, "bad"), replies=1) == [{"ack": "bad"}]
        assert talk(relay.port, packed_message("app", good_blob(100, 1000), 100, "good"), replies=1)
        assert wait_for(lambda: len(relay.good_numbers()) == 199)
    finally:
        err = relay.stop()
    assert not any("late" in r for r in relay.records())
    assert any("time" in e["error"] and e["component"] in ("in", "out") for e in relay.error_records()), err


def test_a_poisoned_chunk_in_the_file_buffer_does_not_wedge_the_sink_after_a_restart(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file: no directory can be made here, so the sink cannot write yet")
    relay = Relay(tmp_path, path=str(blocker / "out.jsonl"))
    try:
        blob = good_blob(50) + entry(POISON["map_key"][0]) + entry(DEEP) + good_blob(48, start=50)
        assert talk(relay.port, packed_message("app", blob, 100, "bad"), replies=1) == [{"ack": "bad"}]
    finally:
        relay.stop()  # the chunk stays in the file buffer: written nowhere yet
    blocker.unlink()
    relay.out = blocker / "out.jsonl"
    relay.start()
    try:
        assert talk(relay.port, packed_message("app", good_blob(100, 1000), 100, "good"), replies=1)
        want = list(range(98)) + list(range(1000, 1100))
        assert wait_for(lambda: relay.good_numbers() == want), relay.good_numbers()[-5:]
    finally:
        err = relay.stop()
    assert "Traceback" not in err, err
    assert "events not written" not in err


BAD_TAGS = ["../outside", "../../x", "/../../abs", "../new_dir/created/x", "nul\x00tag", "ctl\x01\x1b[31m",
            "t" * 300, "..", ".", "%D/%Y"]


def test_tags_in_a_path_stay_inside_its_directory(tmp_path):
    """Point 3: a forward client names the tag, and so the file a `${tag}` path opens."""
    logs = tmp_path / "deep" / "logs"
    relay = Relay(tmp_path, path=f"{logs}/${{tag}}.log")
    relay.out = logs / "good.log"
    try:
        frames = b"".join(msgpack.packb([tag, T0, {"bad": i}, {"chunk": f"c{i}"}]) for i, tag in enumerate(BAD_TAGS))
        assert len(talk(relay.port, frames, replies=len(BAD_TAGS))) == len(BAD_TAGS)
        assert talk(relay.port, packed_message("good", good_blob(100), 100, "good"), replies=1)
        assert wait_for(lambda: relay.good_numbers() == list(range(100)))
    finally:
        err = relay.stop()
    assert "Traceback" not in err, err
    made = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    outside = {p for p in made if not p.startswith("deep/logs/")} - {"conf.yaml", "errors.jsonl"}
    assert {p for p in outside if not p.startswith("buffer/")} == set()
    names = sorted(p.name for p in logs.iterdir())
    assert all(p.parent == logs for p in logs.iterdir()) and len(names) == len(BAD_TAGS) + 1, names
    assert "_._outside.log" in names and "nul_tag.log" in names and "_..log" in names
    long = [n for n in names if n.startswith("ttt")]
    assert len(long) == 1 and len(long[0].encode()) <= 204
    bad = sorted(r["bad"] for p in logs.iterdir() for r in relay.rows(p) if "bad" in r)
    assert bad == list(range(len(BAD_TAGS)))  # each written, none retried forever
