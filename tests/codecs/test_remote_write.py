"""The remote-write WriteRequest the sink sends, decoded by protoc (Debian's protobuf-compiler)
with the remote-write schema as the specification gives it (fixtures/prometheus/remote_write.proto); the servers that read it are in
tests/sinks/test_prometheus_remote_write.py."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from helpers import FIXTURES, make_plugin


def decoded(request: bytes) -> str:
    protoc = shutil.which("protoc")
    if protoc is None:
        pytest.skip("protoc is not installed (apt-get install protobuf-compiler)")
    done = subprocess.run([protoc, "-I", str(FIXTURES / "prometheus"), "--decode=prometheus.WriteRequest",
                           "remote_write.proto"], input=request, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def series(name: str, labels: list[tuple[str, str]], samples: list[tuple[str, int]]) -> str:
    """A TimeSeries as protoc prints it."""
    text = "".join(f'  labels {{\n    name: "{k}"\n    value: "{v}"\n  }}\n' for k, v in [("__name__", name), *labels])
    text += "".join(f"  samples {{\n    value: {v}\n    timestamp: {ms}\n  }}\n" for v, ms in samples)
    return "timeseries {\n" + text + "}\n"


def sink(**options):
    return make_plugin("sink", "prometheus_remote_write", id="rw", inputs=["workers"],
                       url="http://127.0.0.1:9090/api/v1/write", **options)


def test_series_samples_in_time_order_and_type_and_help_metadata():
    rw = sink(labels=["worker-id", "job"], counters=["requests"], static_labels={"job": "app", "zone": "b"})
    request = rw.encode([("t", 1_700_000_001_999_999_999, {"worker-id": 1, "requests": 7, "name": "w"}),
                         ("t", 1_700_000_000_123_456_789, {"worker-id": 1, "requests": 5, "job": "mine"}),
                         ("t", 1_700_000_000_123_456_789, {"worker-id": 1, "requests": 5, "rt": -1.5e-300})])
    text = decoded(request)
    labels = [("job", "app"), ("worker_id", "1"), ("zone", "b")]
    assert text.split("metadata {")[0] == (
        series("requests_total", labels, [("5", 1700000000123), ("7", 1700000001999)])
        + series("requests_total", [("job", "mine"), *labels[1:]], [("5", 1700000000123)])
        + series("rt", labels, [("-1.5e-300", 1700000000123)]))
    metadata = sorted("metadata {" + m for m in text.split("metadata {")[1:])
    assert metadata == ["""\
metadata {
  type: COUNTER
  metric_family_name: "requests_total"
  help: "field requests of the events from workers (sink rw)"
}
""", """\
metadata {
  type: GAUGE
  metric_family_name: "rt"
  help: "field rt of the events from workers (sink rw)"
}
"""]


def test_metadata_off_and_a_time_field_of_the_record():
    rw = sink(metadata=False, time_field="at")
    text = decoded(rw.encode([("t", 1_700_000_000_000_000_000, {"v": 1, "at": "2026-01-01T00:00:00.5Z"}),
                              ("t", 1_700_000_000_000_000_000, {"v": 2, "at": 1767225601.25})]))
    assert "metadata" not in text
    assert [line.strip() for line in text.splitlines() if "timestamp" in line] == [
        "timestamp: 1767225600500", "timestamp: 1767225601250", "timestamp: 1767225601250"]
    # `at` is a number too, so it is a series of its own
    assert text.count('value: "at"') == 1
