"""Validate at the edge (issue 11, point 5): what a source accepts is what every sink can
write, normalised or refused (pipeline/codecs/edge.py) before it is acked; the rest flows."""

from __future__ import annotations

import json

import msgpack
from forward_peers import talk
from helpers import run_pipeline, wait_for
from poison_peer import T0, Relay

from pipeline.codecs import edge

BIG = 1180591620717411303424  # 2**70: no msgpack integer holds it


def _conf(tmp_path, source: str) -> str:
    conf = tmp_path / "c.yaml"
    conf.write_text(f"sources:\n  in: {source}\n"
                    f"sinks:\n  out: {{type: file, inputs: [in], path: '{tmp_path}/out.jsonl',"
                    f" time_key: '', tag_key: '', buffer: {{type: file, path: '{tmp_path}/buffer'}}}}\n"
                    f"  errors: {{type: file, inputs: [_errors], path: '{tmp_path}/errors.jsonl'}}\n")
    return str(conf)


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_exec_printing_an_integer_past_64_bits_keeps_polling(tmp_path):
    """The poll task died with OverflowError in the file buffer, never emitting again."""
    runs = tmp_path / "runs"
    command = (f"n=$(cat {runs} 2>/dev/null || echo 0); echo $((n+1)) > {runs}; "
               f"if [ $n = 0 ]; then echo '{{\"n\": {BIG}}}'; elif [ $n = 1 ]; then "
               "seq 0 99 | sed 's/.*/{\"n\": &}/'; fi")
    conf = _conf(tmp_path, f"{{type: exec, format: json_lines, interval: 0.3s, shell: true, command: {json.dumps(command)}}}")
    from helpers import start_pipeline

    proc = start_pipeline("run", conf)
    try:
        assert wait_for(lambda: len(_rows(tmp_path / "out.jsonl")) == 101)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    rows = _rows(tmp_path / "out.jsonl")
    assert rows[0] == {"n": str(BIG)}  # its digits, exact
    assert [r["n"] for r in rows[1:]] == list(range(100))
    assert b"Traceback" not in err


def test_stdin_msgpack_map_with_a_list_key_keeps_the_records_around_it(tmp_path):
    good = b"".join(msgpack.packb({"n": i}) for i in range(100))
    list_key = b"\x81\x92\x01\x02\xa1v"  # {[1, 2]: "v"}
    more = b"".join(msgpack.packb({"n": i}) for i in range(100, 200))
    result = run_pipeline("run", "--once", _conf(tmp_path, "{type: stdin, format: msgpack}"),
                          input=good + list_key + more)
    assert result.returncode == 0, result.stderr.decode()
    rows = _rows(tmp_path / "out.jsonl")
    assert [r["n"] for r in rows if "n" in r] == list(range(200))
    assert {"[1,2]": "v"} in rows


def test_stdin_line_nested_100000_deep_is_one_error(tmp_path):
    deep = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    lines = b"".join(b'{"n": %d}\n' % i for i in range(100))
    conf = _conf(tmp_path, "{type: stdin, max_line_bytes: 1MiB}")
    result = run_pipeline("run", "--once", conf, input=lines[:500] + deep + lines[500:])
    assert result.returncode == 0, result.stderr.decode()
    assert [r["n"] for r in _rows(tmp_path / "out.jsonl")] == list(range(100))
    [error] = _rows(tmp_path / "errors.jsonl")
    assert f"nested deeper than {edge.MAX_DEPTH} levels" in error["error"] and error["component"] == "in"


def test_forward_message_records_are_made_writable_before_the_ack(tmp_path):
    """Message and Forward mode records are decoded at the source: normalised there."""
    relay = Relay(tmp_path)
    try:
        bad_utf8 = b"\x94\xa3app" + msgpack.packb(T0) + b"\x81\xa1v\xa2\xff\xfe" + msgpack.packb({"chunk": "u"})
        map_key = b"\x94\xa3app" + msgpack.packb(T0) + b"\x81\x81\x01\x01\x01" + msgpack.packb({"chunk": "m"})
        deep = msgpack.packb(["app", T0, {"a": [[[[1]]]]}, {"chunk": "d"}]).replace(b"\x91\x91\x91\x91\x01",
                                                                                    b"\x91" * 300 + b"\x01")
        good = b"".join(msgpack.packb(["app", T0, {"n": i}, {"chunk": f"g{i}"}]) for i in range(100))
        acks = talk(relay.port, bad_utf8 + map_key + deep + good, replies=103)
        assert len(acks) == 103
        assert wait_for(lambda: relay.good_numbers() == list(range(100)))
    finally:
        err = relay.stop()
    others = [{k: v for k, v in r.items() if k != "time"} for r in relay.records() if "n" not in r]
    assert others == [{"v": "\ufffd\ufffd"}, {'{"1":1}': 1}], err
    [error] = relay.error_records()
    assert error["component"] == "in" and "nested deeper" in error["error"]
