"""Sink prometheus_remote_write against a real Prometheus (2.42, remote-write receiver on) and a
real VictoriaMetrics: what it wrote is read back through their query APIs and compared with what
the file sink wrote in the same run."""

from __future__ import annotations

import base64
import json
import math
import signal
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import ROOT, free_port, run_pipeline, start_pipeline, wait_for
from remote_write_peers import Gateway, Prometheus, Sample, VictoriaMetrics, VMAuth, self_signed
from uwsgi_peer import Uwsgi

from pipeline.metrics.rates import parse_rfc3339_ns


def serving(server):
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    yield from serving(Prometheus(tmp_path_factory.mktemp("prometheus")))


@pytest.fixture(scope="module")
def victoria(tmp_path_factory):
    yield from serving(VictoriaMetrics(tmp_path_factory.mktemp("victoria")))


def remote_write(sink_id: str, url: str, inputs: str, **options) -> str:
    conf = {"type": "prometheus_remote_write", "inputs": [inputs], "url": url, **options}
    return f"  {sink_id}: {json.dumps(conf)}\n"


def written(path: Path, prefix: str, labels: list[str], fields, job: str) -> list[Sample]:
    """The samples the file sink's records stand for (its `_time` in RFC 3339, to the ns)."""
    out = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        ms = parse_rfc3339_ns(record["_time"]) // 1_000_000
        for field in fields(record):
            key = {"__name__": prefix + field, "job": job, **{k: str(record[k]) for k in labels if k in record}}
            out.append((tuple(sorted(key.items())), ms, float(record[field])))
    return sorted(out)


def same_as_victoria_keeps(got: list[Sample], want: list[Sample]) -> bool:
    """VictoriaMetrics keeps a value to 12 significant digits (its decimal storage): equal
    series and times, and values equal to that."""
    return len(got) == len(want) and all(
        g[:2] == w[:2] and math.isclose(g[2], w[2], rel_tol=1e-11, abs_tol=0) for g, w in zip(got, want))


def stop(proc) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode()


def test_uwsgi_rates_read_back_equal_what_the_file_sink_wrote(prometheus, victoria, tmp_path):
    server = Uwsgi(tmp_path, str(tmp_path / "stats.sock"))
    out = tmp_path / "rates.jsonl"
    series = {"prefix": "uwsgi_worker_", "labels": ["id"], "fields": ["*_rate"], "static_labels": {"job": "uwsgi"}}
    config = tmp_path / "uwsgi.yaml"
    config.write_text(f"""
sources:
  uwsgi: {{type: uwsgi, address: "unix://{tmp_path / 'stats.sock'}", interval: 0.3s, include: [workers]}}
filters:
  workers: {{type: explode, inputs: [uwsgi], field: workers}}
  rates: {{type: rate, inputs: [workers], fields: [requests, exceptions, tx], group_by: [id]}}
sinks:
  file: {{type: file, inputs: [rates], path: "{out}", time_key: _time, time_format: iso8601}}
""" + remote_write("prom", prometheus.write_url, "rates", **series)
                      + remote_write("vm", victoria.write_url, "rates", **series))
    proc = start_pipeline("run", str(config))
    stop_load = threading.Event()

    def load():
        while not stop_load.is_set():
            server.load(4)
            server.load(1, "/error")

    loader = threading.Thread(target=load)
    loader.start()
    try:
        assert wait_for(lambda: sum('"requests_rate"' in line for line in out.read_text().splitlines()) >= 16,
                        timeout=60)
    finally:
        stop_load.set()
        loader.join()
        status, err = stop(proc)
        server.stop()
    assert status == 0, err

    want = written(out, "uwsgi_worker_", ["id"], lambda r: [f for f in r if f.endswith("_rate")], "uwsgi")
    assert {dict(k)["__name__"] for k, _, _ in want} == {
        "uwsgi_worker_requests_rate", "uwsgi_worker_exceptions_rate", "uwsgi_worker_tx_rate"}
    assert any(v > 0 for k, _, v in want if dict(k)["__name__"] == "uwsgi_worker_requests_rate")
    assert prometheus.samples('{job="uwsgi"}') == want
    assert wait_for(lambda: same_as_victoria_keeps(victoria.samples('{job="uwsgi"}'), want), timeout=20), (
        victoria.samples('{job="uwsgi"}')[:5], want[:5])


def test_docker_cpu_percent_reads_back_equal_what_the_file_sink_wrote(prometheus, victoria, podman, tmp_path):
    out = tmp_path / "docker.jsonl"
    series = {"prefix": "container_", "labels": ["container_name"], "fields": ["cpu_percent", "memory_usage"],
              "static_labels": {"job": "docker"}}
    config = tmp_path / "docker.yaml"
    config.write_text(f"""
sources:
  docker: {{type: docker, endpoint: "unix://{podman.socket}", interval: 0.5s}}
filters:
  stats: {{type: docker_metrics, inputs: [docker]}}
sinks:
  file: {{type: file, inputs: [stats], path: "{out}", time_key: _time, time_format: iso8601}}
""" + remote_write("prom", prometheus.write_url, "stats", **series)
                      + remote_write("vm", victoria.write_url, "stats", **series))
    proc = start_pipeline("run", str(config))
    try:
        # peer-busy spins: its CPU% is far from 0, and podman gives one sample a poll
        assert wait_for(lambda: sum('"cpu_percent"' in line for line in out.read_text().splitlines()) >= 6,
                        timeout=60)
    finally:
        status, err = stop(proc)
    assert status == 0, err

    want = written(out, "container_", ["container_name"], lambda r: [f for f in series["fields"] if f in r], "docker")
    assert {dict(k)["container_name"] for k, _, _ in want} >= {"peer-busy", "peer-idle"}
    assert max(v for k, _, v in want if dict(k) == {"__name__": "container_cpu_percent", "job": "docker",
                                                    "container_name": "peer-busy"}) > 10
    assert prometheus.samples('{job="docker"}') == want
    assert wait_for(lambda: same_as_victoria_keeps(victoria.samples('{job="docker"}'), want), timeout=20)


def test_samples_a_server_refuses_go_to_errors_with_its_answer_and_the_rest_is_written(prometheus, tmp_path):
    """Prometheus refuses a sample older than its head takes (out of bounds) with 400 and keeps
    nothing of that request: the batch is split until that record is found."""
    now = time.time()
    errors = tmp_path / "errors.jsonl"
    config = tmp_path / "refused.yaml"
    config.write_text("sources:\n  in: {type: stdin}\nsinks:\n"
                      + remote_write("prom", prometheus.write_url, "in", fields=["v"], labels=["n"],
                                     time_field="t", static_labels={"job": "refused"})
                      + f"  errors: {{type: file, inputs: [_errors], path: '{errors}'}}\n")
    lines = [{"n": 1, "t": now - 2, "v": 1.5}, {"n": 2, "t": now - 1, "v": 2.5},
             {"n": 3, "t": now - 3 * 3600, "v": 3.5}, {"n": 4, "t": now, "v": 4.5}]
    first = run_pipeline("run", "--once", str(config), input=json.dumps(lines[0]).encode() + b"\n")
    assert first.returncode == 0, first.stderr.decode()
    result = run_pipeline("run", "--once", str(config),
                          input=b"".join(json.dumps(line).encode() + b"\n" for line in lines[1:]))
    assert result.returncode == 0, result.stderr.decode()

    [error] = [json.loads(line) for line in errors.read_text().splitlines()]
    assert error["sample"].startswith("{'n': 3, ") and error["component"] == "prom" and error["kind"] == "poison_record"
    assert f"{prometheus.write_url} answered HTTP 400: 'out of bounds" in error["error"], error
    assert [(dict(k)["n"], ms, v) for k, ms, v in prometheus.samples('{job="refused"}')] == [
        (str(line["n"]), int(line["t"] * 1000), line["v"]) for line in lines if line["n"] != 3]


def test_retry_after_waits_no_longer_than_retry_max_interval(victoria, tmp_path):
    gateway = Gateway(tmp_path, victoria.base, retry_after=3600)
    gateway.maintenance.touch()
    proc = start_numbered(tmp_path, gateway.write_url, free_port(), "capped", retry_max_interval="500ms")
    try:
        sent(proc, numbered(0, 5))
        assert wait_for(lambda: len(gateway.answers()) >= 3, timeout=30), gateway.answers()
        gateway.maintenance.unlink()
        proc.stdin.close()
        assert proc.wait(60) == 0
        assert wait_for(lambda: len(victoria.samples('{job="capped"}')) == 5, timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        gateway.stop()


def test_a_request_past_the_receivers_size_limit_is_split_until_it_fits(tmp_path):
    """VictoriaMetrics answers 400 "too big packed request" past -maxInsertRequestSize."""
    server = VictoriaMetrics(tmp_path, "-maxInsertRequestSize=2000")
    server.start()
    try:
        done = run_numbered(tmp_path, server.write_url, "split", numbered(0, 400))
        assert done.returncode == 0, done.stderr.decode()
        refused = [line for line in server.get("/metrics").decode().splitlines()
                   if line.startswith('vm_http_request_errors_total{path="/api/v1/write"')]
        assert refused and float(refused[0].rsplit(" ", 1)[1]) >= 1, refused  # the whole batch was
        assert not (tmp_path / "errors.jsonl").exists() or not (tmp_path / "errors.jsonl").read_text()
        want = sorted((str(i), i + 0.25) for i in range(400))
        assert wait_for(lambda: sorted(read_back(server, "split")) == want, timeout=20)
    finally:
        server.stop()


def numbered(first: int, last: int) -> bytes:
    return b"".join(b'{"seq": %d, "v": %d.25}\n' % (i, i) for i in range(first, last))


def retries(api: int) -> float:
    page = urllib.request.urlopen(f"http://127.0.0.1:{api}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
               if line.startswith("pipeline_sink_retries_total{") and 'component_id="rw"' in line)


def start_numbered(tmp_path: Path, url: str, api: int, job: str, **options):
    """stdin (the test's numbered lines) -> file and remote write, as one run of the pipeline."""
    config = tmp_path / "numbered.yaml"
    config.write_text(f"shutdown_timeout: 60s\nsources:\n  in: {{type: stdin}}\nsinks:\n"
                      f"  file: {{type: file, inputs: [in], path: '{tmp_path / 'sent.jsonl'}', time_key: _time,"
                      " time_format: iso8601}\n"
                      + remote_write("rw", url, "in", fields=["v"], labels=["seq"],
                                     static_labels={"job": job}, **options))
    return start_pipeline("run", "--api", f"127.0.0.1:{api}", str(config),
                          stdin=subprocess.PIPE)


def sent(proc, lines: bytes) -> None:
    proc.stdin.write(lines)
    proc.stdin.flush()


def test_a_server_down_or_restarting_is_retried_and_nothing_is_lost(tmp_path):
    server = VictoriaMetrics(tmp_path, port=free_port())  # not started: the pipeline finds it down
    api = free_port()
    proc = start_numbered(tmp_path, server.write_url, api, "numbered")
    out = tmp_path / "sent.jsonl"
    try:
        sent(proc, numbered(0, 50))
        assert wait_for(lambda: out.read_text().count("\n") == 50 and retries(api) >= 2, timeout=30)
        server.start()
        sent(proc, numbered(50, 100))
        assert wait_for(lambda: len(server.samples('{job="numbered"}')) == 100, timeout=60)
        server.stop()
        before = retries(api)
        sent(proc, numbered(100, 150))
        assert wait_for(lambda: retries(api) >= before + 2, timeout=30)
        server.start()
        proc.stdin.close()
        assert proc.wait(90) == 0, proc.stderr.read().decode()
        want = written(out, "", ["seq"], lambda r: ["v"], "numbered")
        assert len(want) == 150
        assert wait_for(lambda: server.samples('{job="numbered"}') == want, timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()


def test_a_prometheus_without_its_receiver_is_retried_until_it_has_one(tmp_path):
    server = Prometheus(tmp_path)
    server.receiver = False  # answers 404: the server's config to fix, not the data
    server.start()
    api = free_port()
    proc = start_numbered(tmp_path, server.write_url, api, "enabled-later")
    try:
        sent(proc, numbered(0, 10))
        assert wait_for(lambda: retries(api) >= 2, timeout=30)
        server.stop()
        server.receiver = True
        server.start()
        proc.stdin.close()
        assert proc.wait(60) == 0
        assert "answered HTTP 404: 'remote write receiver needs to be enabled" in proc.stderr.read().decode()
        assert read_back(server, "enabled-later") == sorted((str(i), i + 0.25) for i in range(10))
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()


def test_retry_after_sets_the_wait_and_nothing_is_lost(victoria, tmp_path):
    gateway = Gateway(tmp_path, victoria.base)
    gateway.maintenance.touch()
    api = free_port()
    proc = start_numbered(tmp_path, gateway.write_url, api, "maintenance")
    try:
        sent(proc, numbered(0, 20))
        assert wait_for(lambda: len(gateway.answers()) >= 3, timeout=30)
        refused = [t for t, status in gateway.answers() if status == 503]
        # the backoff alone would have tried again within 0.25-0.5 s, then 0.5-1 s
        assert all(b - a >= 2 - 0.05 for a, b in zip(refused, refused[1:])), refused
        gateway.maintenance.unlink()
        proc.stdin.close()
        assert proc.wait(60) == 0
        err = proc.stderr.read().decode()
        assert "answered HTTP 503: 'down for maintenance'" in err, err
        want = written(tmp_path / "sent.jsonl", "", ["seq"], lambda r: ["v"], "maintenance")
        assert len(want) == 20
        assert wait_for(lambda: victoria.samples('{job="maintenance"}') == want, timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        gateway.stop()


def run_numbered(tmp_path: Path, url: str, job: str, lines: bytes, **options) -> subprocess.CompletedProcess:
    """stdin -> remote write once, `_errors` into a file; the run gives up after 3 s."""
    config = tmp_path / f"{job}.yaml"
    config.write_text(f"shutdown_timeout: 3s\nsources:\n  in: {{type: stdin}}\nsinks:\n"
                      f"  errors: {{type: file, inputs: [_errors], path: '{tmp_path / 'errors.jsonl'}'}}\n"
                      + remote_write("rw", url, "in", fields=["v"], labels=["seq"], static_labels={"job": job},
                                     **options))
    return run_pipeline("run", "--once", str(config), input=lines)


def read_back(server, job: str) -> list[tuple[str, float]]:
    return [(dict(k)["seq"], v) for k, _, v in server.samples(f'{{job="{job}"}}')]


def test_https_with_basic_auth_and_a_wrong_password_is_retried_not_refused(tmp_path):
    cert, key = self_signed(tmp_path)
    server = VictoriaMetrics(tmp_path, "-tls", f"-tlsCertFile={cert}", f"-tlsKeyFile={key}",
                             "-httpAuth.username=pipeline", "-httpAuth.password=s3cret", tls=True)
    server.headers = {"Authorization": "Basic " + base64.b64encode(b"pipeline:s3cret").decode()}
    server.context = ssl.create_default_context(cafile=str(cert))
    server.start()
    try:
        tls = {"ca": str(cert)}
        done = run_numbered(tmp_path, server.write_url, "tls", numbered(0, 3), tls=tls,
                            username="pipeline", password="s3cret")
        assert done.returncode == 0, done.stderr.decode()
        assert wait_for(lambda: read_back(server, "tls") == [("0", 0.25), ("1", 1.25), ("2", 2.25)])

        # 401 is the config's fault, not the data's: kept and retried until the run gives up
        wrong = run_numbered(tmp_path, server.write_url, "tls-wrong", numbered(0, 3), tls=tls,
                             username="pipeline", password="wrong")
        assert wrong.returncode == 1 and b"answered HTTP 401" in wrong.stderr, wrong.stderr.decode()
        assert not (tmp_path / "errors.jsonl").exists() or not (tmp_path / "errors.jsonl").read_text()
        # and a server whose certificate is not trusted is never sent a byte
        untrusted = run_numbered(tmp_path, server.write_url, "tls-untrusted", numbered(0, 1),
                                 username="pipeline", password="s3cret")
        assert untrusted.returncode == 1 and b"CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        assert read_back(server, "tls-wrong") == read_back(server, "tls-untrusted") == []
    finally:
        server.stop()


def test_a_bearer_token_and_headers_reach_vmauth(victoria, tmp_path):
    proxy = VMAuth(tmp_path, victoria.base, "the-token")
    proxy.start()
    try:
        bearer = run_numbered(tmp_path, proxy.write_url, "bearer", numbered(0, 2), bearer_token="the-token")
        assert bearer.returncode == 0, bearer.stderr.decode()
        header = run_numbered(tmp_path, proxy.write_url, "header", numbered(5, 6),
                              headers={"Authorization": "Bearer the-token"})
        assert header.returncode == 0, header.stderr.decode()
        assert wait_for(lambda: read_back(victoria, "bearer") == [("0", 0.25), ("1", 1.25)]
                        and read_back(victoria, "header") == [("5", 5.25)])
        refused = run_numbered(tmp_path, proxy.write_url, "no-token", numbered(0, 1))
        assert refused.returncode == 1 and b"answered HTTP 401" in refused.stderr, refused.stderr.decode()
    finally:
        proxy.stop()


def test_the_example_pushes_container_and_worker_series(prometheus, podman, tmp_path):
    server = Uwsgi(tmp_path, str(tmp_path / "stats.sock"))
    env = {"DOCKER_ENDPOINT": f"unix://{podman.socket}", "UWSGI_STATS": f"unix://{tmp_path / 'stats.sock'}",
           "REMOTE_WRITE_URL": prometheus.write_url, "INTERVAL": "1s", "INSTANCE": "example",
           "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = start_pipeline("run", str(ROOT / "conf" / "remote-write.yaml"), env=env)
    try:
        def pushed() -> bool:
            server.load(3)  # requests between polls: the rates have something to count
            names = {dict(k)["__name__"] for k, _, _ in prometheus.samples('{instance="example"}')}
            return {"container_cpu_percent", "uwsgi_worker_requests_rate", "uwsgi_worker_requests_total"} <= names

        assert wait_for(pushed, timeout=60)
    finally:
        status, err = stop(proc)
        server.stop()
    assert status == 0, err
    busy = prometheus.samples('container_cpu_percent{container_name="peer-busy",job="docker"}')
    assert busy and all(v > 0 for _, _, v in busy)
    workers = {dict(k)["id"] for k, _, _ in prometheus.samples('uwsgi_worker_requests_total{job="uwsgi"}')}
    assert workers == {"1", "2"}


def test_check_warns_when_per_worker_rows_would_be_one_series(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("sources:\n  uwsgi: {type: uwsgi, address: 'unix:///nowhere'}\n"
                    "filters:\n  workers: {type: explode, inputs: [uwsgi], field: workers}\nsinks:\n"
                    + remote_write("rw", "http://127.0.0.1:9090/api/v1/write", "workers")
                    + "  exporter: {type: prometheus_exporter, inputs: [workers]}\n"
                    + remote_write("labelled", "http://127.0.0.1:9090/api/v1/write", "workers", labels=["id"]))
    result = run_pipeline("check", str(conf))
    assert result.returncode == 0
    assert [line.split(": warning: ")[0] for line in result.stderr.decode().splitlines()] == [
        f"{conf}:6: sinks.rw.labels", f"{conf}:7: sinks.exporter.labels"]
