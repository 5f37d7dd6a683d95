"""Filter rate: fields, groups, replace, time_field, state across runs, on the uWSGI replay."""

from __future__ import annotations

import gzip
import json
import time

import pytest
from helpers import FIXTURES, make_plugin, run_pipeline

S = 1_000_000_000


def run(f, *records, tag="t"):
    return [r for _, _, r in f.process([(tag, t, r) for t, r in records])]


def test_globs_groups_and_suffix():
    f = make_plugin("filter", "rate", fields=["workers.*.requests", "tx"], group_by=["host"])
    run(f, (0, {"host": "a", "workers.0.requests": 10, "workers.1.requests": 0, "tx": 100, "other": 5}),
        (0, {"host": "b", "tx": 1000}))
    [a, b] = run(f, (10 * S, {"host": "a", "workers.0.requests": 30, "workers.1.requests": 5, "tx": 200, "other": 9}),
                 (10 * S, {"host": "b", "tx": 1100}))
    assert a["workers.0.requests_rate"] == 2.0 and a["workers.1.requests_rate"] == 0.5 and a["tx_rate"] == 10.0
    assert "other_rate" not in a and a["other"] == 9
    assert b["tx_rate"] == 10.0  # host b is its own series


def test_first_sample_has_no_rate_and_replace_drops_the_counter():
    f = make_plugin("filter", "rate", fields=["n"], replace=True, per=60)
    assert run(f, (0, {"n": 1, "x": 1})) == [{"x": 1}]
    assert run(f, (30 * S, {"n": 11, "x": 1})) == [{"n": 20.0, "x": 1}]


def test_non_numeric_values_are_skipped_and_counted():
    f = make_plugin("filter", "rate", fields=["n"])
    run(f, (0, {"n": "ten"}), (S, {"n": True}), (2 * S, {"n": None}))
    assert f.ctx.counters["non_numeric"] == 3


def test_time_field_rfc3339_and_zero_time():
    f = make_plugin("filter", "rate", fields=["rx"], time_field="read", group_by=["id"])
    run(f, (0, {"id": "c1", "rx": 100, "read": "2024-01-01T00:00:00.000000001Z"}))
    # a stopped container's sample: no rate, the series is not broken
    [stopped] = run(f, (0, {"id": "c1", "rx": 0, "read": "0001-01-01T00:00:00Z"}))
    assert "rx_rate" not in stopped
    [row] = run(f, (0, {"id": "c1", "rx": 300, "read": "2024-01-01T00:00:02.000000001Z"}))
    assert row["rx_rate"] == 100.0


def test_group_by_a_nested_path():
    f = make_plugin("filter", "rate", fields=["requests"], group_by=["worker.id"])
    run(f, (0, {"worker": {"id": 1}, "requests": 0}), (0, {"worker": {"id": 2}, "requests": 100}))
    rows = run(f, (S, {"worker": {"id": 1}, "requests": 5}), (S, {"worker": {"id": 2}, "requests": 110}))
    assert [r["requests_rate"] for r in rows] == [5.0, 10.0]


def test_state_survives_between_runs(tmp_path):
    now = time.time_ns()
    first = make_plugin("filter", "rate", fields=["n"], state_dir=tmp_path)
    run(first, (now, {"n": 5}))
    first.ctx.save_state(first.save_state())
    second = make_plugin("filter", "rate", fields=["n"], state_dir=tmp_path)
    second.load_state(second.ctx.load_state())
    assert run(second, (now + 5 * S, {"n": 30})) == [{"n": 30, "n_rate": 5.0}]


def test_a_torn_state_file_is_ignored(tmp_path, caplog):
    (tmp_path / "test.state").write_bytes(b"\x93\x01")  # a kill mid-write without the atomic rename
    f = make_plugin("filter", "rate", fields=["n"], state_dir=tmp_path)
    f.load_state(f.ctx.load_state())
    assert run(f, (0, {"n": 1})) == [{"n": 1}]


@pytest.mark.parametrize("on_reset", ["skip", "from_zero"])
def test_uwsgi_replay_worker_respawns_and_a_full_restart(on_reset):
    explode = make_plugin("filter", "explode", field="workers", keep=["pid"])
    rate = make_plugin("filter", "rate", fields=["requests", "tx", "exceptions"], group_by=["id"],
                       on_reset=on_reset)
    with gzip.open(FIXTURES / "uwsgi/stats-replay.jsonl.gz") as f:
        lines = [json.loads(line) for line in f.read().splitlines()[:6000]]
    rates = []
    for line in lines:
        batch = explode.process([("uwsgi", int(line["ts"] * S), line["stats"])])
        rates += [r for _, _, r in rate.process(batch)]
    values = [r["requests_rate"] for r in rates if "requests_rate" in r]
    assert len(values) > 20000 and min(values) >= 0  # never negative, through the restart at line 5500
    assert rate.ctx.counters["resets"] >= 4  # the full restart resets every worker's counters


@pytest.mark.parametrize("xdg", [True, False])
def test_once_without_state_dir_keeps_state_in_the_users_state_directory(tmp_path, xdg):
    conf = tmp_path / "c.yaml"
    conf.write_text("sources:\n  in: {type: stdin}\n"
                    "filters:\n  r: {type: rate, inputs: [in], fields: [n]}\n"
                    "sinks:\n  out: {type: stdout, inputs: [r]}\n")
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg")} if xdg else {"XDG_STATE_HOME": "", "HOME": str(tmp_path)}
    where = tmp_path / ("xdg/pipeline" if xdg else ".local/state/pipeline")
    first = run_pipeline("run", "--once", "--log-level", "debug", str(conf), input=b'{"n": 1}\n', env=env)
    assert first.returncode == 0 and json.loads(first.stdout) == {"n": 1}, first.stderr
    assert f"state kept in {where / 'r.state'}" in first.stderr.decode()
    time.sleep(0.05)
    second = run_pipeline("run", "--once", str(conf), input=b'{"n": 101}\n', env=env)
    assert json.loads(second.stdout)["n_rate"] > 0
    assert (where / "r.state").is_file()


def test_a_field_never_seen_is_said_once_at_run_time(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("sources:\n  in: {type: stdin}\n"
                    "filters:\n  r: {type: rate, inputs: [in], fields: [tx, 'workers.*.requests']}\n"
                    "sinks:\n  out: {type: stdout, inputs: [r]}\n")
    lines = b"".join(b'{"tx": %d, "workers": [{"requests": %d}]}\n' % (i, i) for i in range(300))
    result = run_pipeline("run", "--once", str(conf), input=lines)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.decode().splitlines() if "matched no field" in line]
    assert len(warnings) == 1 and "workers.*.requests matched no field of 100 records" in warnings[0]
    assert "tx" not in warnings[0].split("matched")[0]
