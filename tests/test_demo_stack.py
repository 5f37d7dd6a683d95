"""The demo stack of docker-compose.yml, as far as it runs without a Docker engine: every file
it mounts or builds exists and passes its own checker, and the pipeline's config runs against
a real uWSGI serving demo/app.py under demo/load.py, forwarding to a real forward receiver."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from forward_peers import Receiver
from helpers import ROOT, free_port, port_open, promtool, run_pipeline, start_pipeline, wait_for

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def mounts(service: dict) -> list[tuple[Path, str]]:
    """(file or folder in this repository, path in the container) of each bind mount."""
    out = []
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        out.append(((ROOT / host).resolve(), container))
    return out


def test_the_stack_is_app_load_pipeline_fluentd_prometheus():
    assert set(SERVICES) == {"app", "load", "pipeline", "fluentd", "prometheus"}
    assert SERVICES["fluentd"]["image"].startswith("fluent/fluentd:")
    assert SERVICES["prometheus"]["image"].startswith("prom/prometheus:")
    for name, service in SERVICES.items():
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file(), name
        for host, _ in mounts(service):
            assert host.exists() and host.is_relative_to(ROOT), f"{name} mounts {host}, which is not here"
    # the addresses agree with each other: pipeline -> app's stats, pipeline -> fluentd, prometheus -> pipeline
    env = SERVICES["pipeline"]["environment"]
    assert env["DEMO_UWSGI_STATS"] == "tcp://app" + SERVICES["app"]["environment"]["DEMO_STATS"]
    assert env["FLUENTD_HOST"] == "fluentd" and f"port {env['FLUENTD_PORT']}" in fluentd_sections()["source"]
    targets = yaml.safe_load((ROOT / "demo" / "prometheus.yml").read_text())["scrape_configs"][0]["static_configs"]
    assert targets == [{"targets": [f"pipeline:{env['EXPORTER_PORT']}"]}]
    assert SERVICES["load"]["command"][-1] == "http://app" + SERVICES["app"]["environment"]["DEMO_HTTP"]


def test_the_pipeline_config_passes_check_with_the_stacks_environment():
    service = SERVICES["pipeline"]
    verb, conf = service["command"]
    # the image (Dockerfile) copies conf/ to its working directory
    assert verb == "run" and "COPY conf ./conf" in (ROOT / "Dockerfile").read_text()
    result = run_pipeline("check", str(ROOT / conf), env={k: str(v) for k, v in service["environment"].items()})
    assert result.returncode == 0, result.stderr.decode()


def test_prometheus_config_passes_promtool():
    [(host, container)] = mounts(SERVICES["prometheus"])
    assert container == "/etc/prometheus/prometheus.yml"
    check = promtool("check", "config", str(host))
    assert check.returncode == 0, (check.stdout + check.stderr).decode()


def fluentd_sections() -> dict[str, str]:
    [(host, _)] = mounts(SERVICES["fluentd"])
    text = re.sub(r"#.*", "", host.read_text())
    return {m[1] + (" " + m[2] if m[2] else ""): m[3] for m in re.finditer(r"<(\w+)\s*([^>]*)>(.*?)</\1>", text, re.S)}


def test_fluentd_config_takes_forward_and_prints_everything():
    # no fluentd here to ask: its config is checked for what the stack needs of it
    [(_, container)] = mounts(SERVICES["fluentd"])
    assert container == "/fluentd/etc/fluent.conf"  # the official image's default config
    sections = fluentd_sections()
    assert set(sections) == {"source", "match **"}
    assert re.search(r"@type forward\b", sections["source"]) and re.search(r"bind 0\.0\.0\.0", sections["source"])
    assert re.search(r"@type stdout\b", sections["match **"])


class DemoApp:
    """demo/app.py under a real uWSGI with demo/uwsgi.ini, on free ports."""

    def __init__(self, tmp: Path):
        exe = shutil.which("uwsgi")
        if exe is None:
            if os.environ.get("CI"):
                pytest.fail("uwsgi is not installed: .ci/run installs .ci/apt-packages")
            pytest.skip("uwsgi is not installed (apt-get install uwsgi-core uwsgi-plugin-python3)")
        self.http, self.stats = free_port(), free_port()
        env = dict(os.environ, DEMO_HTTP=f"127.0.0.1:{self.http}", DEMO_STATS=f"127.0.0.1:{self.stats}")
        self.proc = subprocess.Popen([exe, "--plugin", "python3", "--ini", str(ROOT / "demo" / "uwsgi.ini")],
                                     env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "uwsgi.log", "wb"))
        assert wait_for(lambda: port_open(self.http) and port_open(self.stats), timeout=20), \
            (tmp / "uwsgi.log").read_text()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


def test_the_stacks_pipeline_runs_against_uwsgi_and_a_forward_receiver(tmp_path):
    app = DemoApp(tmp_path)
    receiver = Receiver(tmp_path)
    load = subprocess.Popen([sys.executable, str(ROOT / "demo" / "load.py"), f"http://127.0.0.1:{app.http}"])
    exporter = free_port()
    pipeline = start_pipeline("run", str(ROOT / "conf" / "demo-stack.yaml"), env={
        "DEMO_UWSGI_STATS": f"tcp://127.0.0.1:{app.stats}", "UWSGI_INTERVAL": "1s",
        "FLUENTD_HOST": "127.0.0.1", "FLUENTD_PORT": str(receiver.port), "EXPORTER_PORT": str(exporter)})
    try:
        def rated() -> list[dict]:
            return [r for r in receiver.records() if "requests_rate" in r]
        assert wait_for(lambda: {r["worker_id"] for r in rated()} == {1, 2}, timeout=30), receiver.records()
        page = urllib.request.urlopen(f"http://127.0.0.1:{exporter}/metrics", timeout=5).read()
    finally:
        load.kill()
        load.wait()
        pipeline.terminate()
        _, err = pipeline.communicate(timeout=30)
        receiver.stop()
        app.stop()
    assert pipeline.returncode == 0, err.decode()
    record = rated()[-1]
    assert record["tag"] == "uwsgi.workers" and record["requests_rate"] >= 0 and "avg_rt" in record
    assert sum(r["requests"] for r in receiver.records()) > 0  # the load generator's requests
    check = promtool("check", "metrics", input=page)
    assert check.returncode == 0 and not check.stdout + check.stderr, (check.stdout + check.stderr).decode()
    for metric in ("uwsgi_requests_total", "uwsgi_requests_rate", "uwsgi_avg_rt"):
        assert re.search(rf'^{metric}{{worker_id="1"}} ', page.decode(), re.M), page.decode()
