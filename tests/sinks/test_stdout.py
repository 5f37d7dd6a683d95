"""Sink stdout: JSON lines with tag/time, msgpack, LTSV and mackerel lines, via the real CLI."""

from __future__ import annotations

import json

import msgpack
import pytest
from helpers import run_pipeline
from mackerel_rules import parse_meta, uncovered, value_names

from pipeline.codecs.encode import Encoder


def run(tmp_path, **sink):
    options = ", ".join(f"{k}: {v}" for k, v in sink.items())
    conf = tmp_path / "c.yaml"
    conf.write_text("sources:\n  in: {type: stdin, tag: app.x}\n"
                    f"sinks:\n  out: {{type: stdout, inputs: [in]{', ' if options else ''}{options}}}\n")
    data = b'{"a": 1, "s": "x\\ty", "n": {"v": 2.5, "b": true}}\n{"a": 2, "s": "z", "n": {"v": 1}}\n'
    result = run_pipeline("run", "--once", str(conf), input=data)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_json_lines(tmp_path):
    out = run(tmp_path)
    assert [json.loads(x) for x in out.splitlines()] == [
        {"a": 1, "s": "x\ty", "n": {"v": 2.5, "b": True}}, {"a": 2, "s": "z", "n": {"v": 1}}]


@pytest.mark.parametrize("fmt, check", [
    ("unix", lambda v: isinstance(v, int) and abs(v - __import__("time").time()) < 60),
    ("float", lambda v: isinstance(v, float) and abs(v - __import__("time").time()) < 60),
    ("iso8601", lambda v: len(v) == 30 and v[4] == "-" and v[10] == "T" and v.endswith("Z")),
])
def test_tag_and_time_keys(tmp_path, fmt, check):
    out = run(tmp_path, tag_key="tag", time_key="time", time_format=fmt)
    first = json.loads(out.splitlines()[0])
    assert first["tag"] == "app.x" and check(first["time"])


def test_tag_and_time_keys_replace_fields_of_those_names():
    # the keys are put into each record's JSON text: a field of the same name must be replaced,
    # not written twice, and an empty record or one orjson refuses must come out whole
    batch = [("a", 2_000_000_000, {"time": "old", "x": 1}), ("a", 2_000_000_000, {}),
             ("b", 3_000_000_000, {"tag": "mine"}), ("b", 3_000_000_000, {"n": 2 ** 70})]
    lines = Encoder("json", tag_key="tag", time_key="time").encode(batch).decode().splitlines()
    assert [json.loads(x) for x in lines] == [
        {"time": 2, "x": 1, "tag": "a"}, {"tag": "a", "time": 2}, {"tag": "b", "time": 3},
        {"n": 2 ** 70, "tag": "b", "time": 3}]
    assert all(x.count('"time"') == 1 and x.count('"tag"') == 1 for x in lines)


def test_msgpack_stream(tmp_path):
    out = run(tmp_path, format="msgpack")
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(out)
    assert [r["a"] for r in unpacker] == [1, 2]


def test_ltsv(tmp_path):
    out = run(tmp_path, format="ltsv")
    assert out.decode().splitlines() == ['a:1\ts:x\\ty\tn:{"v":2.5,"b":true}', 'a:2\ts:z\tn:{"v":1}']


def test_mackerel(tmp_path):
    out = run(tmp_path, format="mackerel", prefix="app")
    lines = [line.split("\t") for line in out.decode().splitlines()]
    assert [(name, value) for name, value, _ in lines] == [
        ("app.a", "1"), ("app.n.v", "2.5"), ("app.a", "2"), ("app.n.v", "1")]
    assert all(epoch.isdigit() and len(epoch) == 10 for _, _, epoch in lines)


def test_mackerel_plugin_meta_from_the_config_covers_every_value(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("sources:\n  in: {type: stdin}\n"
                    "sinks:\n  out: {type: stdout, inputs: [in], format: mackerel,\n"
                    "        metrics: ['ports.*.queue', 'ports.*.backlog', listen_overflows]}\n")
    # mackerel-agent gives the meta run no input: the meta must not need any
    meta = run_pipeline("run", "--once", str(conf), env={"MACKEREL_AGENT_PLUGIN_META": "1"})
    assert meta.returncode == 0, meta.stderr
    graphs = parse_meta(meta.stdout)
    assert graphs == {
        "ports.#": {"label": "ports.#", "unit": "float",
                   "metrics": [{"name": "queue", "label": "queue"}, {"name": "backlog", "label": "backlog"}]},
        "pipeline": {"label": "pipeline", "unit": "float",
                     "metrics": [{"name": "listen_overflows", "label": "listen_overflows"}]}}
    data = b'{"ports": {"8080": {"queue": 3, "backlog": 128}, "80": {"queue": 0}}, "listen_overflows": 7}\n'
    values = run_pipeline("run", "--once", str(conf), input=data)
    names = value_names(values.stdout)
    # a name without a dot was `listen_overflows`, posted as custom.listen_overflows: no graph has it
    assert names == ["ports.8080.queue", "ports.8080.backlog", "ports.80.queue", "pipeline.listen_overflows"]
    assert uncovered(names, graphs) == []


def test_mackerel_check_warns_when_the_fields_cannot_be_told(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("sources:\n  in: {type: stdin}\n"
                    "sinks:\n  out: {type: stdout, inputs: [in], format: mackerel}\n")
    result = run_pipeline("check", str(conf))
    assert result.returncode == 0
    assert b"warning: " in result.stderr and b"sinks.out.format: " in result.stderr and b"`metrics`" in result.stderr
