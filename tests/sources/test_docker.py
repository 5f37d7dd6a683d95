"""Source docker against a real Docker-compatible Engine API: podman's, started by the tests
(podman_peer) with two running containers (peer-busy, peer-idle)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from helpers import FIXTURES, ROOT, make_plugin, run_pipeline
from mackerel_rules import parse_meta, uncovered, value_names


@pytest.fixture(scope="module")
def docker_api(podman):
    return f"unix://{podman.socket}"


def poll(source):
    return [r for _, _, r in asyncio.run(source.poll())]


def test_lists_negotiates_and_fetches_every_container(docker_api):
    source = make_plugin("source", "docker", endpoint=docker_api, record_labels=["app"])
    rows = {r["container_name"]: r for r in poll(source)}
    assert {"peer-busy", "peer-idle"} <= set(rows)
    busy = rows["peer-busy"]
    assert busy["labels"] == {"app": "busy"} and "pipeline-busybox" in busy["image"]
    assert len(busy["container_id"]) == 64 and busy["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert source.one_shot  # API 1.41: one-shot stats


def test_a_bare_socket_path_is_the_unix_endpoint(podman):
    source = make_plugin("source", "docker", endpoint=str(podman.socket), containers=["peer-idle"])
    assert [r["container_name"] for r in poll(source)] == ["peer-idle"]


def test_the_negotiated_version_is_debug_not_info(docker_api, caplog):
    caplog.set_level(logging.DEBUG, "pipeline")
    assert poll(make_plugin("source", "docker", endpoint=docker_api))
    # `run --once` under in_exec negotiates on every call: at info it would log every call
    assert [r.levelname for r in caplog.records if "Docker API version" in r.getMessage()] == ["DEBUG"]


def test_an_answer_past_max_bytes_fails_the_poll(docker_api):
    source = make_plugin("source", "docker", endpoint=docker_api, max_bytes=100)
    assert poll(source) == []
    assert source.ctx.last_failure == \
        f"cannot list containers at {docker_api}: answer larger than max_bytes (100 bytes), not parsed"


def test_filters_by_name_glob_and_label(docker_api):
    by_label = make_plugin("source", "docker", endpoint=docker_api, labels={"app": "idle"})
    assert [r["container_name"] for r in poll(by_label)] == ["peer-idle"]
    by_glob = make_plugin("source", "docker", endpoint=docker_api, containers=["peer-b*"])
    assert [r["container_name"] for r in poll(by_glob)] == ["peer-busy"]


def test_removed_mid_poll_and_restart(docker_api, podman, tmp_path):
    cli = podman.podman
    assert cli("run", "-d", "--name", "peer-temp", "--network", "none", "localhost/pipeline-busybox",
               "sleep", "300").returncode == 0
    try:
        source = make_plugin("source", "docker", endpoint=docker_api, containers=["peer-*"])
        prefix = asyncio.run(source._negotiate())
        listed = json.loads(source.client.request_sync("GET", f"{prefix}/containers/json").body)
        assert cli("rm", "-f", "peer-temp").returncode == 0  # gone between the list and its stats
        async def stats_of_all():
            return await asyncio.gather(*(source._stats(prefix, c) for c in listed))

        events = asyncio.run(stats_of_all())
        names = {e[2]["container_name"] for e in events if e is not None}
        assert "peer-temp" not in names and {"peer-busy", "peer-idle"} <= names
        assert not source.ctx.failing
    finally:
        cli("rm", "-f", "peer-temp")
    # a restart: same id, counters start again; docker_metrics gives no negative numbers
    conf = ROOT / "conf" / "docker-stats.yaml"
    env = {"DOCKER_ENDPOINT": docker_api, "PIPELINE_STATE_DIR": str(tmp_path / "state"),
           "OUT_DIR": str(tmp_path)}
    assert run_pipeline("run", "--once", str(conf), env=env).returncode == 0
    assert cli("restart", "peer-idle").returncode == 0
    result = run_pipeline("run", "--once", str(conf), env=env)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows and all(v >= 0 for r in rows for k, v in r.items() if k.endswith(("_rate", "_percent")))


def test_unreachable_socket_is_one_log_line(tmp_path, caplog):
    source = make_plugin("source", "docker", endpoint=f"unix://{tmp_path}/nope.sock")
    assert poll(source) == [] and poll(source) == []
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "cannot list containers" in errors[0].getMessage()
    assert source.ctx.counters["errors"] == 2


def test_a_failing_container_that_is_gone_no_longer_fails_the_source():
    # the Engine's own answers (recorded from podman), served over HTTP; one container's
    # stats fail, then that container is no longer listed
    from http_peers import Server

    recorded = FIXTURES / "docker" / "podman" / "body"
    listed = json.loads((recorded / "containers-json.json").read_text())
    good, bad = listed[0], listed[1]
    server = Server()
    try:
        server.route("/v1.41/containers/json", json.dumps([good, bad]).encode())
        server.route(f"/v1.41/containers/{good['Id']}/stats?stream=false&one-shot=true",
                     (recorded / "stats-fx-idle-000.json").read_bytes())
        server.route(f"/v1.41/containers/{bad['Id']}/stats?stream=false&one-shot=true", b"boom", status=500)
        source = make_plugin("source", "docker", endpoint=f"tcp://127.0.0.1:{server.port}", api_version="1.41")
        assert len(poll(source)) == 1 and source.ctx.failing
        server.route("/v1.41/containers/json", json.dumps([good]).encode())  # removed
        assert len(poll(source)) == 1 and not source.ctx.failing
    finally:
        server.close()


def test_docker_metrics_as_a_mackerel_plugin_graphs_by_unit(docker_api, tmp_path):
    """docker -> docker_metrics -> mackerel lines: docker_metrics declares what it adds (CPU
    and memory percentages, bytes, byte counters), and only those are printed, each under the
    graph of its unit; the stats document's own numbers, which the config cannot tell, are not."""
    conf = tmp_path / "c.yaml"
    conf.write_text(f"sources:\n  d: {{type: docker, endpoint: '{docker_api}', containers: [peer-busy]}}\n"
                    "filters:\n  m: {type: docker_metrics, inputs: [d]}\n"
                    "sinks:\n  out: {type: stdout, inputs: [m], format: mackerel, prefix: docker,"
                    " name_by: [container_name]}\n")
    meta = run_pipeline("run", "--once", str(conf), env={"MACKEREL_AGENT_PLUGIN_META": "1"})
    assert meta.returncode == 0, meta.stderr
    graphs = parse_meta(meta.stdout)
    runs = [run_pipeline("run", "--once", str(conf)) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    names = [n for r in runs for n in value_names(r.stdout)]
    assert uncovered(names, graphs) == []
    assert {"docker.peer-busy.percentage.cpu_percent", "docker.peer-busy.bytes.memory_usage",
            "docker.peer-busy.percentage.memory_percent", "docker.peer-busy.integer.pids",
            "docker.peer-busy.bytes_per_second.net_rx_bytes_rate"} <= set(names)
    assert graphs["docker.#.bytes"]["unit"] == "bytes" and graphs["docker.#.percentage"]["unit"] == "percentage"
    assert not [n for n in names if "cpu_stats" in n or "memory_stats" in n]
