"""Filter flatten: the key styles, limits, collisions, and the real uWSGI and Docker stats."""

from __future__ import annotations

import json

import pytest
from helpers import FIXTURES, make_plugin

from pipeline.codecs.formats import json_loads

NESTED = {"version": "2.0", "workers": [{"id": 1, "cores": [{"requests": 3}]}, {"id": 2, "cores": []}],
          "load": {"avg": 0.5}}


def flat(record, **options):
    f = make_plugin("filter", "flatten", **options)
    [(_, _, out)] = f.process([("t", 1, record)])
    return out, f


def test_index_style_is_the_default():
    out, _ = flat(NESTED)
    assert out == {"version": "2.0", "workers.0.id": 1, "workers.0.cores.0.requests": 3, "workers.1.id": 2,
                   "workers.1.cores": [], "load.avg": 0.5}


def test_keep_style_leaves_lists():
    out, _ = flat(NESTED, arrays="keep")
    assert out == {"version": "2.0", "workers": NESTED["workers"], "load.avg": 0.5}


def test_norikra_style():
    out, _ = flat({"workers": [{"avg rt": 10, "app.name": "x"}]}, arrays="norikra", separator="_",
                  sanitize="norikra")
    assert out == {"workers_$0_avg_rt": 10, "workers_$0_app_name": "x"}
    out, _ = flat(NESTED, arrays="norikra")
    assert out["workers.$1.id"] == 2


def test_max_depth_and_fields():
    out, _ = flat({"a": {"b": {"c": 1}}, "x": {"y": 2}}, max_depth=1)
    assert out == {"a.b": {"c": 1}, "x.y": 2}
    out, _ = flat({"a": {"b": 1}, "x": {"y": 2}}, fields=["x"])
    assert out == {"a": {"b": 1}, "x.y": 2}


def test_collisions_keep_every_value_and_are_counted():
    out, f = flat({"a.b": 1, "a": {"b": 2, "c": 3}, "a.c": 4})
    assert out == {"a.b": 1, "a.b~2": 2, "a.c": 3, "a.c~2": 4}
    assert f.ctx.counters["key_collisions"] == 2


def test_values_survive():
    record = {"empty_map": {}, "empty_list": [], "null": None, "t": True, "f": False, "big": 2**80,
              "ключ": {"値": "ü"}, "n": {"x": None, "y": [None, False]}}
    out, _ = flat(record)
    assert out == {"empty_map": {}, "empty_list": [], "null": None, "t": True, "f": False, "big": 2**80,
                   "ключ.値": "ü", "n.x": None, "n.y.0": None, "n.y.1": False}


def test_input_records_are_not_changed():
    record = json.loads(json.dumps(NESTED))
    flat(record)
    assert record == NESTED


@pytest.mark.parametrize("name", [f"uwsgi/stats-{i:03d}.json" for i in (0, 5, 19)] + ["uwsgi/tcp/stats-000.json"])
def test_real_uwsgi_stats(name):
    doc = json_loads((FIXTURES / name).read_bytes())
    out, f = flat(doc)
    assert out["workers.0.id"] == doc["workers"][0]["id"]
    assert out[f"workers.{len(doc['workers']) - 1}.requests"] == doc["workers"][-1]["requests"]
    assert out["locks.0.user 0"] == doc["locks"][0]["user 0"]  # a key with a space survives
    assert all(not isinstance(v, (dict, list)) or not v for v in out.values())
    assert f.ctx.counters["key_collisions"] == 0
    # Norikra style: no dots left, every key in Norikra's alphabet
    out, _ = flat(doc, arrays="norikra", separator="_", sanitize="norikra")
    assert out["workers_$0_avg_rt"] == doc["workers"][0]["avg_rt"]
    assert all(all(c.isalnum() or c in "_$" for c in k) for k in out)


def test_invalid_utf8_in_uwsgi_vars_survives(tmp_path):
    raw = (FIXTURES / "uwsgi/stats-005.json").read_bytes()
    # uWSGI copies raw request header bytes into cores[].vars: make one invalid UTF-8 with a control char
    broken = raw.replace(b'"vars":[', b'"vars":["HTTP_X=\xff\xfe\x01",', 1)
    assert broken != raw
    doc = json_loads(broken)
    out, _ = flat(doc)
    assert any(isinstance(v, str) and v.startswith("HTTP_X=\ufffd") for v in out.values())


@pytest.mark.parametrize("name", ["ha-supervisor/container_stats_cgroupv1.json",
                                  "ha-supervisor/container_stats_cgroupv2.json",
                                  "telegraf/testdata__stats_e2173b94.json"])
def test_real_docker_stats(name):
    doc = json_loads((FIXTURES / "docker/public" / name).read_bytes())
    out, _ = flat(doc)
    for key, value in doc["memory_stats"].items():
        if not isinstance(value, (dict, list)):
            assert out[f"memory_stats.{key}"] == value
    assert out["cpu_stats.cpu_usage.total_usage"] == doc["cpu_stats"]["cpu_usage"]["total_usage"]
    limit = doc["memory_stats"].get("stats", {}).get("hierarchical_memory_limit")
    if limit is not None:
        assert out["memory_stats.stats.hierarchical_memory_limit"] == limit and isinstance(limit, int)
