"""The exposition-format parser on the recorded node_exporter and prometheus_client pages."""

from __future__ import annotations

import math

import pytest
from helpers import FIXTURES

from pipeline.codecs.prometheus_text import ParseError, parse

PROM = FIXTURES / "prometheus"


def body(name: str) -> str:
    raw = (PROM / name).read_text()
    return raw.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in raw else raw.split("\n\n", 1)[1]


def test_node_exporter():
    samples, helps = parse((PROM / "node-000.txt").read_text())
    by = {(s.name, tuple(sorted(s.labels.items()))): s for s in samples}
    cpu = by[("node_cpu_seconds_total", (("cpu", "0"), ("mode", "idle")))]
    assert cpu.type == "counter" and cpu.value == 904.59
    assert by[("go_gc_duration_seconds", (("quantile", "0.5"),))].type == "summary"
    assert by[("go_gc_duration_seconds_count", ())].family == "go_gc_duration_seconds"
    assert "pause duration" in helps["go_gc_duration_seconds"]
    # integers written as 1.445257e+06 are numbers like any other
    assert all(isinstance(s.value, float) for s in samples)
    assert any(s.type == "untyped" for s in samples) or len(samples) > 400


def test_text_format_histogram_labels_and_escapes():
    samples, _ = parse(body("promclient-text-0.0.4.http"))
    buckets = [s for s in samples if s.name == "app_request_latency_seconds_bucket"]
    assert buckets and all(s.type == "histogram" for s in buckets)
    assert buckets[0].labels == {"le": "0.005", "path": "/api/items/{id}"}
    assert any(s.labels.get("le") == "+Inf" for s in buckets)


def test_openmetrics_nan_inf_and_escapes():
    samples, _ = parse(body("promclient-openmetrics.http"), openmetrics=True)
    values = [s.value for s in samples]
    assert any(math.isnan(v) for v in values) and math.inf in values and -math.inf in values
    escaped = {s.labels["v"] for s in samples if s.name == "app_label_escaping"}
    assert escaped == {'say "hi"', "C:\\path\\x", "line1\nline2"}
    counters = [s for s in samples if s.name == "python_gc_objects_collected_total"]
    assert counters and counters[0].type == "counter" and counters[0].family == "python_gc_objects_collected"


def test_timestamps():
    samples, _ = parse('a{x="1"} 3 1700000000123\n')
    assert samples[0].timestamp_ns == 1700000000123 * 10**6
    samples, _ = parse("a_total 3 1700000000.5\n# EOF\n", openmetrics=True)
    assert samples[0].timestamp_ns == 1700000000_500000000


@pytest.mark.parametrize("text", ['a{x="1} 3\n', "a\n", "a b\n", 'a{x=1} 3\n'])
def test_malformed(text):
    with pytest.raises(ParseError):
        parse(text)


def test_a_bad_line_is_quoted_and_cut_in_the_error():
    with pytest.raises(ParseError) as e:
        parse('up{job="a\x07b"} oops' + "x" * 100_000 + "\n")
    assert str(e.value).startswith("line 1: bad number in 'up{job=\"a\\x07b\"} oops") and len(str(e.value)) < 300
