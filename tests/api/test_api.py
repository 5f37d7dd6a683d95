"""The api of a running pipeline: /healthz, /metrics (scraped by a real Prometheus and
checked by promtool), /api/components, where it listens, and --log-format json."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse

import pytest
from api_peers import get, get_json, listening_address, running
from helpers import free_port, port_open, promtool, run_pipeline, wait_for

FLOWING = """
api: {address: "{api}"}
sources:
  gen: {type: exec, command: ["echo", '{"a": 1}'], interval: 0.2s}
  bad: {type: exec, command: ["echo", "not json"], interval: 0.5s}
filters:
  ren: {type: rename, inputs: [gen, bad], fields: {a: b}}
sinks:
  out: {type: file, inputs: [ren], path: "OUT"}
"""


def test_healthz_names_a_sink_retrying_past_unhealthy_after_a_full_buffer_and_a_failing_source(tmp_path):
    dead = free_port()  # nothing listens there
    config = f"""
api: {{address: "{{api}}", unhealthy_after: 1s}}
sources:
  gen: {{type: exec, command: ["echo", '{{"a": "{'x' * 300}"}}'], interval: 0.1s}}
  web: {{type: http_json, url: "http://127.0.0.1:{dead}/", interval: 0.2s}}
sinks:
  out:
    type: forward
    inputs: [gen, web]
    servers: [{{host: 127.0.0.1, port: {dead}}}]
    buffer: {{max_bytes: 4KiB, overflow: drop_newest}}
"""
    with running(tmp_path, config) as (_, port):
        status, doc = get_json(port, "/healthz")
        assert (status, doc) == (200, {"status": "ok"}) or status == 503  # a poll may have failed already
        assert wait_for(lambda: len(get_json(port, "/healthz")[1].get("failing", [])) >= 3, timeout=20)
        status, doc = get_json(port, "/healthz")
    assert status == 503 and doc["status"] == "failing"
    reasons = {(f["component"], f["reason"].split(" ", 2)[0]) for f in doc["failing"]}
    assert ("out", "retrying") in reasons and ("out", "buffer") in reasons, doc
    assert any(f["component"] == "web" and "cannot get" in f["reason"] for f in doc["failing"]), doc


def test_healthz_ok_while_a_sink_retries_less_than_unhealthy_after(tmp_path):
    dead = free_port()
    config = f"""
api: {{address: "{{api}}"}}
sources:
  gen: {{type: exec, command: ["echo", '{{"a": 1}}'], interval: 0.1s}}
sinks:
  out: {{type: forward, inputs: [gen], servers: [{{host: 127.0.0.1, port: {dead}}}]}}
"""
    with running(tmp_path, config) as (_, port):
        assert wait_for(lambda: get_json(port, "/api/components")[1]["components"][1]["sink"]["retrying_seconds"])
        assert get_json(port, "/healthz") == (200, {"status": "ok"})  # default unhealthy_after: 1m


def _scrape_config(tmp_path, target: str) -> str:
    path = tmp_path / "prometheus.yml"
    path.write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: pipeline
    static_configs: [{{targets: ["{target}"]}}]
""")
    return str(path)


def _query(port: int, expr: str) -> list[dict]:
    status, doc = get_json(port, "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, doc
    return doc["data"]["result"]


def test_prometheus_scrapes_the_metrics_and_promtool_finds_no_problem(tmp_path):
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    with running(tmp_path, FLOWING.replace("OUT", str(tmp_path / "out.jsonl"))) as (_, port):
        assert wait_for(lambda: b"pipeline_component_errors_total{" in get(port, "/metrics")[1]
                        and (tmp_path / "out.jsonl").exists())
        status, body = get(port, "/metrics")
        assert status == 200
        checked = promtool("check", "metrics", input=body)
        assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), checked
        text = body.decode()
        for name in ("pipeline_component_received_events_total", "pipeline_component_sent_events_total",
                     "pipeline_component_errors_total", "pipeline_component_received_bytes_total",
                     "pipeline_component_sent_bytes_total", "pipeline_buffer_events", "pipeline_buffer_bytes",
                     "pipeline_buffer_chunks", "pipeline_buffer_oldest_chunk_age_seconds",
                     "pipeline_sink_writes_total", "pipeline_sink_retries_total",
                     "pipeline_sink_given_up_events_total", "pipeline_sink_write_duration_seconds_bucket",
                     "pipeline_source_poll_duration_seconds_count", "pipeline_source_skipped_ticks_total",
                     "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                     "process_start_time_seconds"):
            assert f"\n{name}" in text, name

        web = free_port()
        prom = subprocess.Popen([exe, f"--config.file={_scrape_config(tmp_path, f'127.0.0.1:{port}')}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{web}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert wait_for(lambda: port_open(web), timeout=30)
            assert wait_for(lambda: _query(web, 'pipeline_component_sent_events_total{component_id="ren"} > 0'),
                            timeout=30)
            sent = _query(web, "pipeline_component_sent_events_total")
            assert {r["metric"]["component_id"]: r["metric"]["component_kind"] for r in sent} == {
                "gen": "source", "bad": "source", "ren": "filter", "out": "sink"}
            assert _query(web, 'pipeline_component_errors_total{component_id="bad",error_kind="bad_input"} > 0')
            assert sent[0]["metric"]["job"] == "pipeline"
            assert _query(web, "pipeline_sink_write_duration_seconds_count > 0")
            assert _query(web, "process_resident_memory_bytes > 1e6")
            assert _query(web, 'up{job="pipeline"} == 1')
        finally:
            prom.terminate()
            prom.wait(20)


def test_components_give_each_config_with_the_secrets_masked(tmp_path):
    config = """
api: {address: "{api}"}
sources:
  fw:
    type: forward
    port: 0
    shared_key: the-shared-secret
    users: [{username: alice, password: alices-password}]
  web: {type: http_json, url: "http://127.0.0.1:1/", headers: {Authorization: Bearer the-token}, interval: 1h}
sinks:
  out: {type: forward, inputs: [fw, web], servers: [{host: 127.0.0.1, port: 1}], shared_key: other-secret,
        username: bob, password: bobs-password}
"""
    with running(tmp_path, config) as (_, port):
        status, body = get(port, "/api/components")
    assert status == 200
    for secret in ("the-shared-secret", "alices-password", "the-token", "other-secret", "bobs-password"):
        assert secret.encode() not in body
    comps = {c["id"]: c for c in json.loads(body)["components"]}
    assert list(comps) == ["fw", "web", "out"]
    assert comps["fw"]["config"]["shared_key"] == "********"
    assert comps["fw"]["config"]["users"] == [{"username": "alice", "password": "********"}]
    assert comps["web"]["config"]["headers"] == {"Authorization": "********"}
    assert comps["out"]["config"]["username"] == "bob" and comps["out"]["config"]["password"] == "********"
    assert comps["out"]["inputs"] == ["fw", "web"] and comps["fw"]["outputs"] == ["out"]
    assert comps["out"]["buffer"]["max_bytes"] == 64 * 1024 * 1024


def test_a_bare_port_listens_on_loopback_only_and_an_explicit_address_beyond(tmp_path):
    port = free_port()
    config = FLOWING.replace('"{api}"', f'":{port}"').replace("OUT", str(tmp_path / "out.jsonl"))
    with running(tmp_path, config.replace(f'":{port}"', '"{api}"')):
        pass  # the helper's own address works
    (tmp_path / "a.yaml").write_text(config)
    for address, expected in ((f":{port}", "0100007F"), (f"0.0.0.0:{port}", "00000000")):
        from helpers import start_pipeline

        proc = start_pipeline("run", str(tmp_path / "a.yaml"), "--api", address)
        try:
            assert wait_for(lambda: port_open(port))
            assert listening_address(port) == expected, address
        finally:
            proc.terminate()
            proc.wait(20)


def test_unknown_pages_and_methods_are_refused(tmp_path):
    with running(tmp_path, FLOWING.replace("OUT", str(tmp_path / "out.jsonl"))) as (_, port):
        status, doc = get_json(port, "/nope")
        assert status == 404 and "/metrics" in doc["pages"]
        import urllib.request

        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method="POST", data=b"")
        try:
            urllib.request.urlopen(request, timeout=5)
            raise AssertionError("POST accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 405 and e.headers["Allow"] == "GET"


def test_the_api_section_is_checked_like_any_option(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("api: {address: localhost, unhealthy_after: soon}\n"
                    "sources: {a: {type: stdin}}\nsinks: {b: {type: discard, inputs: [a]}}\n")
    result = run_pipeline("check", str(path))
    assert result.returncode == 2
    err = result.stderr.decode()
    assert f"{path}:1: api.address: expected an address like 127.0.0.1:24220" in err
    assert f"{path}:1: api.unhealthy_after: expected a duration" in err


def test_log_format_json_gives_one_object_a_line(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("sources: {in: {type: stdin}}\nsinks: {out: {type: discard, inputs: [in]}}\n")
    for args, config in ((["--log-format", "json"], path), ([], tmp_path / "q.yaml")):
        if not args:
            config.write_text("log_format: json\n" + path.read_text())
        result = run_pipeline("run", "--once", str(config), *args, input=b'{"a": 1}\nnot json\n')
        lines = [json.loads(line) for line in result.stderr.decode().splitlines()]
        bad = [d for d in lines if d.get("component") == "in"]
        assert bad and bad[0]["kind"] == "source" and bad[0]["level"] == "warning", lines
        assert "not json" in bad[0]["message"] and bad[0]["time"].endswith("Z")
        time.strptime(bad[0]["time"][:19], "%Y-%m-%dT%H:%M:%S")


def _tail_gauges(port: int) -> dict[str, float]:
    _, body = get(port, "/metrics")
    return {line.split("{")[0]: float(line.split()[-1]) for line in body.decode().splitlines()
            if line.startswith(("pipeline_tail_files{", "pipeline_tail_behind_bytes{"))}


def test_metrics_show_the_files_a_tail_follows_and_the_bytes_behind_their_ends(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    line = "x" * 99 + "\n"
    for name in ("a.log", "b.log"):
        (logs / name).write_text(line * 2000)
    blocker = tmp_path / "file"
    blocker.write_text("a regular file: the sink cannot make a directory under it")
    config = f"""
api: {{address: "{{api}}"}}
state_dir: {tmp_path / "state"}
sources:
  t: {{type: tail, path: "{logs}/*.log", read_from_head: true}}
sinks:
  stuck: {{type: file, inputs: [t], path: "{blocker}/out.jsonl", buffer: {{max_bytes: 64KiB}}}}
"""
    with running(tmp_path, config) as (_, port):
        # the sink cannot write, its buffer fills, the tail stops reading: most bytes stay behind
        assert wait_for(lambda: _tail_gauges(port).get("pipeline_tail_files", 0) >= 1)
        time.sleep(1.5)
        gauges = _tail_gauges(port)
        assert 1 <= gauges["pipeline_tail_files"] <= 2, gauges
        assert 20_000 < gauges["pipeline_tail_behind_bytes"] <= 2 * 2000 * 100, gauges
        _, body = get(port, "/metrics")
        checked = promtool("check", "metrics", input=body)
        assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr


def test_metrics_count_the_bytes_a_tail_read(tmp_path):
    log = tmp_path / "app.log"
    text = "".join(f"line {i} of the log, read once\n" for i in range(24))
    log.write_text(text)
    config = f"""
api: {{address: "{{api}}"}}
state_dir: {tmp_path / "state"}
sources:
  t: {{type: tail, path: "{log}", read_from_head: true}}
sinks:
  out: {{type: discard, inputs: [t]}}
"""
    def received() -> float | None:
        _, body = get(port, "/metrics")
        for line in body.decode().splitlines():
            if line.startswith("pipeline_component_received_bytes_total{") and 'component_id="t"' in line:
                return float(line.split()[-1])
        return None

    with running(tmp_path, config) as (_, port):
        # what the source read, as the uwsgi source counts what it read: not 0
        assert wait_for(lambda: received() == len(text.encode())), received()
        with open(log, "a") as f:
            f.write("one more\n")
        assert wait_for(lambda: received() == len(text.encode()) + 9), received()
