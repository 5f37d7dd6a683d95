"""Source internal_metrics: the api's figures as events, with no api configured."""

from __future__ import annotations

import json

from api_peers import running
from helpers import run_pipeline, wait_for


def test_the_figures_come_as_records_every_interval(tmp_path):
    out = tmp_path / "metrics.jsonl"
    config = f"""
sources:
  gen: {{type: exec, command: ["echo", '{{"a": 1}}'], interval: 0.2s}}
  im: {{type: internal_metrics, interval: 0.5s}}
sinks:
  data: {{type: discard, inputs: [gen]}}
  metrics: {{type: file, inputs: [im], path: "{out}"}}
"""

    def records() -> list[dict]:
        return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

    def sent_by_gen() -> list[float]:
        return [r["component_sent_events_total"] for r in records() if r.get("component_id") == "gen"]

    # the api only tells running() when the pipeline is up; the source does not need it
    with running(tmp_path, 'api: {address: "{api}"}\n' + config):
        assert wait_for(lambda: len(sent_by_gen()) >= 2 and sent_by_gen()[-1] > 0, timeout=20)
    got = records()
    first_round = got[:4]
    assert [r.get("component_id") for r in first_round] == ["gen", "im", "data", "metrics"]
    gen, data = first_round[0], first_round[2]
    assert gen["component_kind"] == "source" and gen["component_type"] == "exec"
    assert "source_poll_duration_seconds_count" in gen and "component_received_bytes_total" in gen
    assert data["component_kind"] == "sink" and "buffer_events" in data and "sink_writes_total" in data
    process = got[4]
    assert process["process_resident_memory_bytes"] > 1e6 and process["process_open_fds"] > 0


def test_under_once_without_an_api(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("sources: {im: {type: internal_metrics, interval: 0}}\n"
                    "sinks: {out: {type: stdout, inputs: [im]}}\n")
    result = run_pipeline("run", "--once", str(path))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r.get("component_id") for r in records] == ["im", "out", None]
    assert records[1]["buffer_max_bytes"] == 64 * 1024 * 1024
