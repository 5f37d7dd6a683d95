"""Source prometheus against a real node_exporter (Debian prometheus-node-exporter, started here
on 127.0.0.1) and the recorded pages served by a local HTTP server."""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import subprocess

import pytest
from helpers import FIXTURES, free_port, make_plugin, port_open, run_pipeline, wait_for
from http_peers import Server

S = 1_000_000_000


@pytest.fixture(scope="module")
def node_exporter():
    exe = shutil.which("prometheus-node-exporter")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus-node-exporter is not installed: .ci/run installs .ci/apt-packages")
        pytest.skip("prometheus-node-exporter is not installed")
    port = free_port()
    proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
                             "--collector.cpu", "--collector.loadavg", "--collector.meminfo"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: port_open(port)), "node_exporter did not start"
    yield f"http://127.0.0.1:{port}/metrics"
    proc.terminate()
    proc.wait(timeout=10)


def poll(source):
    return asyncio.run(source.poll())


def test_samples_from_node_exporter(node_exporter):
    batch = poll(make_plugin("source", "prometheus", url=node_exporter, metrics=["node_*"], exclude=["node_scrape*"]))
    records = [r for _, _, r in batch]
    cpu = [r for r in records if r["name"] == "node_cpu_seconds_total"]
    assert cpu and cpu[0]["type"] == "counter" and set(cpu[0]["labels"]) == {"cpu", "mode"}
    assert all(r["name"].startswith("node_") and not r["name"].startswith("node_scrape") for r in records)
    assert any(r["name"] == "node_load1" and r["type"] == "gauge" for r in records)


def test_grouped_then_rate_gives_cpu_rates(node_exporter, tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text(f"""
state_dir: {tmp_path}
sources:
  node: {{type: prometheus, url: "{node_exporter}", mode: grouped, metrics: [node_cpu_seconds_total]}}
filters:
  rate: {{type: rate, inputs: [node], fields: [node_cpu_seconds_total], group_by: [cpu, mode]}}
sinks:
  out: {{type: stdout, inputs: [rate]}}
""")
    import json
    import time

    first = run_pipeline("run", "--once", str(conf))
    assert first.returncode == 0, first.stderr
    time.sleep(1.1)
    second = run_pipeline("run", "--once", str(conf))
    rows = [json.loads(line) for line in second.stdout.splitlines()]
    assert rows and {"cpu", "mode", "node_cpu_seconds_total", "node_cpu_seconds_total_rate"} <= set(rows[0])
    idle = [r["node_cpu_seconds_total_rate"] for r in rows if r["mode"] == "idle"]
    # a cpu's seconds per second: between 0 and 1 (with some scrape jitter)
    assert idle and all(0 <= v <= 1.5 for v in idle)


def test_recorded_pages_text_gzip_and_openmetrics():
    server = Server()
    try:
        raw = (FIXTURES / "prometheus/promclient-openmetrics.http").read_bytes()
        head, body = raw.split(b"\r\n\r\n", 1) if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)
        server.route("/om", body, headers={"Content-Type": "application/openmetrics-text; version=1.0.0"})
        server.route("/gz", (FIXTURES / "prometheus/node-gzip.raw.gz").read_bytes(),
                     headers={"Content-Type": "text/plain; version=0.0.4", "Content-Encoding": "gzip"})
        server.route("/bad", b"this is { not prometheus", headers={"Content-Type": "text/plain"})
        om = [r for _, _, r in poll(make_plugin("source", "prometheus", url=f"{server.url}/om"))]
        assert any(r["name"] == "python_gc_objects_collected_total" for r in om)
        assert "openmetrics" in server.requests[-1][2]["Accept"]
        gz = [r for _, _, r in poll(make_plugin("source", "prometheus", url=f"{server.url}/gz", mode="grouped"))]
        assert any("node_cpu_seconds_total" in r for r in gz)
        bad = make_plugin("source", "prometheus", url=f"{server.url}/bad")
        assert poll(bad) == [] and bad.ctx.failing
    finally:
        server.close()


def test_a_gzip_answer_past_max_bytes_inflated_is_not_parsed():
    server = Server()
    try:  # 50 KB on the wire, 50 MB inflated
        server.route("/bomb", gzip.compress(b"# " + b"x" * 50_000_000 + b"\n"),
                     headers={"Content-Type": "text/plain; version=0.0.4", "Content-Encoding": "gzip"})
        source = make_plugin("source", "prometheus", url=f"{server.url}/bomb")
        assert poll(source) == []
        assert source.ctx.last_failure == \
            f"cannot scrape {server.url}/bomb: answer larger than max_bytes (16777216 bytes), not parsed"
    finally:
        server.close()
