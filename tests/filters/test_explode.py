"""Filter explode: one record per element, on the recorded uWSGI stats."""

from __future__ import annotations

from helpers import FIXTURES, make_plugin

from pipeline.codecs.formats import json_loads


def explode(record, **options):
    f = make_plugin("filter", "explode", **options)
    return [r for _, _, r in f.process([("t", 1, record)])], f


def test_workers_become_rows_with_parent_scalars():
    doc = json_loads((FIXTURES / "uwsgi/stats-005.json").read_bytes())
    rows, _ = explode(doc, field="workers")
    assert len(rows) == len(doc["workers"]) == 4
    for i, (row, worker) in enumerate(zip(rows, doc["workers"])):
        assert row["index"] == i and row["requests"] == worker["requests"] and row["avg_rt"] == worker["avg_rt"]
        assert row["version"] == doc["version"] and row["listen_queue"] == doc["listen_queue"]
        assert row["cores"] == worker["cores"]  # nested arrays stay as they are
        assert "sockets" not in row and "locks" not in row  # only the parent's scalars
    # the worker's pid wins over the master's, and that is counted
    assert rows[0]["pid"] == doc["workers"][0]["pid"]


def test_keep_prefix_as_and_index_key():
    record = {"host": "a", "n": 1, "items": [{"x": 1}, {"x": 2}]}
    rows, _ = explode(record, field="items", keep=["host"], prefix="item_", index_key="i")
    assert rows == [{"host": "a", "item_x": 1, "i": 0}, {"host": "a", "item_x": 2, "i": 1}]
    rows, _ = explode(record, field="items", **{"as": "item"})
    assert rows == [{"host": "a", "n": 1, "item": {"x": 1}, "index": 0}, {"host": "a", "n": 1, "item": {"x": 2}, "index": 1}]


def test_scalars_nested_paths_and_records_without_the_array():
    rows, _ = explode({"a": {"list": [1, 2]}}, field="a.list")
    assert rows == [{"a.list": 1, "index": 0}, {"a.list": 2, "index": 1}]
    rows, f = explode({"other": 1}, field="workers")
    assert rows == [{"other": 1}] and f.ctx.counters["no_array"] == 1
    rows, _ = explode({"workers": []}, field="workers")
    assert rows == []


def test_again_on_cores():
    doc = json_loads((FIXTURES / "uwsgi/stats-005.json").read_bytes())
    workers = make_plugin("filter", "explode", field="workers")
    cores = make_plugin("filter", "explode", field="cores", prefix="core_", index_key="core_index")
    rows = cores.process(workers.process([("t", 1, doc)]))
    assert len(rows) == sum(len(w["cores"]) for w in doc["workers"])
    assert {"id", "core_id", "core_requests", "core_index", "index"} <= set(rows[0][2])
