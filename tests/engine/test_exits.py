"""A run that lost data never exits 0, and nothing ends it quietly (issue 20, points 7 and 8):
the real `python -m pipeline run`, real HTTP and TCP peers on 127.0.0.1."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from helpers import FIXTURES, run_pipeline, start_pipeline, wait_for
from http_peers import Server


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def stop(proc) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err.decode()


def test_a_sample_time_past_2106_goes_to_errors_and_the_daemon_runs_on(tmp_path):
    """It used to reach the file buffer, which could not hold it: the source's task died,
    and the daemon exited 0 half a second later, nothing written, nothing said."""
    page = (FIXTURES / "prometheus/node-000.txt").read_bytes() + b"far_future_sample 1 99999999999999999999\n"
    server = Server()
    server.route("/metrics", page, headers={"Content-Type": "text/plain; version=0.0.4"})
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    conf = tmp_path / "c.yaml"
    conf.write_text(f"""
sources:
  node: {{type: prometheus, url: "{server.url}/metrics", interval: 0.2s, metrics: [node_load1, far_future_*]}}
sinks:
  out: {{type: file, inputs: [node], path: {out}, buffer: {{type: file, path: {tmp_path / 'buf'}}}}}
  errors: {{type: file, inputs: [_errors], path: {errors}}}
""")
    proc = start_pipeline("run", str(conf))
    try:
        assert wait_for(lambda: len(lines(out)) >= 2 and lines(errors) or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()[1].decode()
    finally:
        status, log = stop(proc)
        server.close()
    assert status == 0, log
    assert {r["name"] for r in lines(out)} == {"node_load1"}
    bad = lines(errors)[0]
    assert bad["kind"] == "bad_time" and "far_future_sample" in bad["sample"], bad
    assert "is not a time from 1970 to 2106" in log, log


def test_a_record_the_file_buffer_cannot_hold_goes_to_errors_and_the_rest_flows(tmp_path):
    """An integer past 64 bits that a filter set (sources' records meet the rule): the stdin
    source's task used to die of the buffer's OverflowError, the rest of the input unread."""
    plain, errors = tmp_path / "plain.jsonl", tmp_path / "errors.jsonl"
    conf = tmp_path / "c.yaml"
    conf.write_text(f"""
sources:
  in: {{type: stdin}}
filters:
  big: {{type: record, inputs: [in], set: {{big: 99999999999999999999}}}}
sinks:
  plain: {{type: file, inputs: [in], path: {plain}, buffer: {{type: file, path: {tmp_path / 'b1'}}}}}
  bigs: {{type: file, inputs: [big], path: {tmp_path / 'bigs.jsonl'}, buffer: {{type: file, path: {tmp_path / 'b2'}}}}}
  errors: {{type: file, inputs: [_errors], path: {errors}}}
""")
    given = b"".join(b'{"n": %d}\n' % i for i in range(1000))
    result = run_pipeline("run", str(conf), input=given)
    log = result.stderr.decode()
    assert result.returncode == 0, log
    assert [r["n"] for r in lines(plain)] == list(range(1000)), log
    quarantined = lines(errors)
    assert len(quarantined) == 1000 and {r["kind"] for r in quarantined} == {"poison_record"}, log
    assert "record cannot be buffered (OverflowError" in log, log
