"""Sink prometheus_remote_write against a real Prometheus (2.42, remote-write receiver on) and a
real VictoriaMetrics: what it wrote is read back through their query APIs and compared with what
the file sink wrote in the same run."""

from __future__ import annotations

import json
import math
import signal
import threading
from pathlib import Path

import pytest
from helpers import start_pipeline, wait_for
from remote_write_peers import Prometheus, Sample, VictoriaMetrics
from uwsgi_peer import Uwsgi

from pipeline.rates import parse_rfc3339_ns


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    server = Prometheus(tmp_path_factory.mktemp("prometheus"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def victoria(tmp_path_factory):
    server = VictoriaMetrics(tmp_path_factory.mktemp("victoria"))
    server.start()
    yield server
    server.stop()


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
