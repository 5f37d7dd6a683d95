"""Source uwsgi against a real uWSGI (Debian's uwsgi-core + python3 plugin), and the two uWSGI
example configs end to end."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import time
from pathlib import Path

import pytest
from helpers import FIXTURES, ROOT, accept_forever, free_port, make_plugin, run_pipeline, start_pipeline
from mackerel_rules import parse_meta, uncovered, value_names
from uwsgi_peer import Uwsgi


@pytest.fixture(scope="module")
def uwsgi_unix(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uwsgi")
    server = Uwsgi(tmp, str(tmp / "stats.sock"))
    server.address = f"unix://{tmp / 'stats.sock'}"
    yield server
    server.stop()


def poll(**options):
    source = make_plugin("source", "uwsgi", **options)
    asyncio.run(source.start())
    return source, asyncio.run(source.poll())


def test_unix_socket_under_load(uwsgi_unix):
    _, [(tag, t, before)] = poll(address=uwsgi_unix.address)
    uwsgi_unix.load(20)
    uwsgi_unix.load(3, "/error")
    _, [(tag, t, after)] = poll(address=uwsgi_unix.address)
    assert tag == "test" and abs(t / 1e9 - time.time()) < 60
    assert len(after["workers"]) == 2
    total = sum(w["requests"] for w in after["workers"]) - sum(w["requests"] for w in before["workers"])
    assert total >= 23
    assert sum(w["exceptions"] for w in after["workers"]) >= 3
    assert "locks" not in after  # left out by default
    assert all("cores" in w and "apps" in w for w in after["workers"])


def test_a_bare_socket_path_is_a_unix_address(uwsgi_unix):
    path = uwsgi_unix.address.removeprefix("unix://")
    source, [(_, _, doc)] = poll(address=path)
    assert source.conf.address == uwsgi_unix.address and doc["workers"] and doc["version"]


def test_include_leaves_heavy_parts_out(uwsgi_unix):
    _, [(_, _, doc)] = poll(address=uwsgi_unix.address, include=["workers", "locks"])
    assert "locks" in doc and isinstance(doc["locks"], list) and all(len(lock) == 1 for lock in doc["locks"])
    assert "sockets" not in doc
    assert all("cores" not in w and "apps" not in w for w in doc["workers"])


@pytest.mark.parametrize("mode", ["tcp", "http"])
def test_tcp_and_http_stats(tmp_path, mode):
    port = free_port()
    extra = ("--stats-http",) if mode == "http" else ()
    server = Uwsgi(tmp_path, f"127.0.0.1:{port}", extra)
    try:
        server.load(5)
        _, [(_, _, doc)] = poll(address=f"{mode}://127.0.0.1:{port}/")
        assert sum(w["requests"] for w in doc["workers"]) >= 5 and doc["version"]
    finally:
        server.stop()


def test_http_address_at_a_plain_stats_socket_logs_what_came_on_one_line(tmp_path, caplog):
    port = free_port()
    server = Uwsgi(tmp_path, f"127.0.0.1:{port}")  # no --stats-http: it writes bare JSON
    try:
        source, batch = poll(address=f"http://127.0.0.1:{port}/")
    finally:
        server.stop()
    assert batch == []
    [line] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert line.startswith(f"cannot read uWSGI stats from http://127.0.0.1:{port}/: not an HTTP answer: '{{")
    assert "\n" not in line and len(line) < 400


def test_stats_past_max_bytes_are_not_parsed(tmp_path):
    server = FakeStatsServer(tmp_path / "s.sock")
    server.payload = (FIXTURES / "uwsgi/stats-010.json").read_bytes()
    source, batch = poll(address=f"unix://{tmp_path / 's.sock'}", max_bytes=len(server.payload) - 1)
    assert batch == [] and source.ctx.last_failure.endswith(
        f"stats larger than max_bytes ({len(server.payload) - 1} bytes), not parsed")
    _, [(_, _, doc)] = poll(address=f"unix://{tmp_path / 's.sock'}", max_bytes=len(server.payload))
    server.sock.close()
    assert doc["workers"][0]["id"] == 1


class FakeStatsServer:
    """A unix socket that answers like a broken stats server: what it sends is up to the test."""

    def __init__(self, path: Path):
        self.path = path
        self.payload = b""
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen(8)
        accept_forever(self.sock, self.answer)

    def answer(self, conn):
        with conn:
            conn.sendall(self.payload)


def test_down_garbage_and_half_documents_log_per_state_change(tmp_path, caplog):
    caplog.set_level(logging.INFO)  # the recovery is said at info
    path = tmp_path / "s.sock"
    source = make_plugin("source", "uwsgi", address=f"unix://{path}")
    asyncio.run(source.start())

    def polls(n):
        return [asyncio.run(source.poll()) for _ in range(n)]

    assert polls(3) == [[], [], []]  # nothing listening
    server = FakeStatsServer(path)
    good = (FIXTURES / "uwsgi/stats-005.json").read_bytes()
    server.payload = good[: len(good) // 2]  # half a document
    assert polls(2) == [[], []]
    server.payload = b"\x00\xffgarbage"
    assert polls(2) == [[], []]
    server.payload = good
    [[(_, _, doc)]] = polls(1)
    assert doc["workers"][0]["requests"] == json.loads(good)["workers"][0]["requests"]
    server.sock.close()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    # one line when it went down, not one per poll; one when it came back
    assert len(errors) == 1 and "cannot read uWSGI stats" in errors[0]
    assert sum("readable again" in r.getMessage() for r in caplog.records) == 1
    assert source.ctx.counters["errors"] == 7


def test_recorded_stats_with_invalid_utf8(tmp_path):
    good = (FIXTURES / "uwsgi/stats-010.json").read_bytes()
    server = FakeStatsServer(tmp_path / "s.sock")
    server.payload = good.replace(b'"vars":[', b'"vars":["HTTP_COOKIE=\xc3\x28\x07",', 1)
    _, [(_, _, doc)] = poll(address=f"unix://{tmp_path / 's.sock'}")
    server.sock.close()
    assert doc["workers"][0]["id"] == 1


def run_conf(name: str, address: str, state: Path):
    return run_pipeline("run", "--once", str(ROOT / "conf" / name),
                        env={"UWSGI_STATS": address, "PIPELINE_STATE_DIR": str(state)})


def test_in_exec_example_gives_rates_from_the_second_call(uwsgi_unix, tmp_path):
    first = run_conf("uwsgi-in_exec.yaml", uwsgi_unix.address, tmp_path)
    assert first.returncode == 0, first.stderr
    rows = [json.loads(line) for line in first.stdout.splitlines()]
    assert [r["id"] for r in rows] == [1, 2] and not any("requests_rate" in r for r in rows)
    uwsgi_unix.load(30)
    second = run_conf("uwsgi-in_exec.yaml", uwsgi_unix.address, tmp_path)
    rows = [json.loads(line) for line in second.stdout.splitlines()]
    assert all(r["requests_rate"] >= 0 and "tx_rate" in r for r in rows)
    assert sum(r["requests_rate"] for r in rows) > 0
    assert {"version", "listen_queue", "avg_rt", "index"} <= set(rows[0])
    assert "cores" not in rows[0]


def test_norikra_example_has_flat_names(uwsgi_unix, tmp_path):
    run_conf("uwsgi-norikra.yaml", uwsgi_unix.address, tmp_path)
    uwsgi_unix.load(10)
    result = run_conf("uwsgi-norikra.yaml", uwsgi_unix.address, tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["worker_id"] for r in rows] == [1, 2]
    for r in rows:
        assert "avg_rt" in r and "requests_rate" in r and r["tag"] == "uwsgi"
        assert not any("." in k for k in r if k != "apps")


def test_norikra_windows_example_averages_match_the_raw_samples(uwsgi_unix, tmp_path):
    """The three Norikra queries over a real uWSGI under load, in 2 s windows: each window's
    averages against the raw samples the same run wrote to its file sink."""
    raw = tmp_path / "raw.jsonl"
    proc = start_pipeline("run", str(ROOT / "conf" / "uwsgi-norikra-windows.yaml"),
                          env={"UWSGI_STATS": uwsgi_unix.address, "PIPELINE_STATE_DIR": str(tmp_path),
                               "WINDOW": "2s", "INTERVAL": "0.25s", "RAW_PATH": str(raw)})
    started = time.time()
    try:
        while time.time() - started < 8.5:  # three whole windows, whatever the phase
            uwsgi_unix.load(4, "/slow")
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    stopped = time.time()
    assert proc.returncode == 0, err.decode()
    windows = [json.loads(line) for line in out.splitlines()]
    samples = [json.loads(line) for line in raw.read_text().splitlines()]
    assert len(windows) >= 3 and all(w["tag"] == "uwsgi.per_minute" for w in windows)
    assert windows[-1]["window_end"] <= stopped  # the open window was kept, not emitted half-full
    for w in windows:
        rows = [s for s in samples if w["window_start"] <= s["time"] < w["window_end"]]
        assert w["window_end"] - w["window_start"] == 2 and w["samples"] == len(rows) > 0
        for name, value in [("listen_queue_avg", lambda s: s["listen_queue"]),
                            ("avg_rt_avg", lambda s: s["workers"][0]["avg_rt"]),
                            ("rss_avg", lambda s: s["workers"][0]["rss"])]:
            assert w[name] == pytest.approx(sum(map(value, rows)) / len(rows)), name
    assert any(w["avg_rt_avg"] > 0 for w in windows) and all(w["rss_avg"] > 0 for w in windows)


MACKEREL_CONF = ROOT / "conf" / "uwsgi-mackerel.yaml"


def test_mackerel_meta_covers_every_value_per_worker_without_polling(uwsgi_unix, tmp_path):
    """conf/uwsgi-mackerel.yaml (the README's example) as mackerel-agent runs it."""
    state = tmp_path / "xdg" / "pipeline"
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg"), "UWSGI_STATS": uwsgi_unix.address}
    meta = run_pipeline("run", "--once", str(MACKEREL_CONF), env={**env, "MACKEREL_AGENT_PLUGIN_META": "1"})
    assert meta.returncode == 0, meta.stderr
    assert not state.exists()  # the meta run neither polled nor saved rate state
    graphs = parse_meta(meta.stdout)
    first = run_pipeline("run", "--once", str(MACKEREL_CONF), env=env)
    assert first.returncode == 0 and state.exists(), first.stderr
    uwsgi_unix.load(20)
    second = run_pipeline("run", "--once", str(MACKEREL_CONF), env=env)
    names = value_names(second.stdout)
    # a name per worker: each worker's values survive in mackerel-agent, not only the last one's
    assert len(names) == len(set(names))
    assert {"uwsgi.worker.1.requests_rate", "uwsgi.worker.2.requests_rate", "uwsgi.worker.2.tx"} <= set(names)
    assert uncovered(names, graphs) == []
    # the same meta with the stats server down: it comes from the config
    down_env = {**env, "UWSGI_STATS": f"unix://{tmp_path / 'down.sock'}", "MACKEREL_AGENT_PLUGIN_META": "1"}
    down = run_pipeline("run", "--once", str(MACKEREL_CONF), env=down_env)
    assert down.returncode == 0 and parse_meta(down.stdout) == graphs


def test_check_warns_when_per_worker_rows_would_print_the_same_names(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text(MACKEREL_CONF.read_text().replace(", name_by: [id]", ""))
    result = run_pipeline("check", str(conf))
    assert result.returncode == 0
    [warning] = result.stderr.decode().splitlines()
    assert warning.startswith(f"{conf}:13: sinks.mackerel.name_by: warning: several records a run")


def test_check_refuses_a_rate_pattern_into_the_nested_document(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("sources:\n  u: {type: uwsgi, address: 'unix:///nowhere'}\n"
                    "filters:\n  r:\n    type: rate\n    inputs: [u]\n    fields:\n      - tx\n"
                    "      - workers.*.requests\n"
                    "sinks:\n  o: {type: stdout, inputs: [r]}\n")
    result = run_pipeline("check", str(conf))
    assert result.returncode == 2
    assert f"{conf}:9: filters.r.fields[1]: 'workers.*.requests' names a field inside nested records " \
           "(workers.N.requests)" in result.stderr.decode()
