"""A run that lost data never exits 0, and nothing ends it quietly (issue 20, points 7 and 8):
the real `python -m pipeline run`, real HTTP and TCP peers on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest
from helpers import FIXTURES, free_port, run_pipeline, start_pipeline, wait_for
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


@pytest.mark.parametrize("args, stdin", [((), False), (("--once",), False), ((), True)],
                         ids=["daemon", "once", "beside-stdin"])
def test_a_forward_source_whose_port_is_taken_stops_the_start_naming_it(tmp_path, args, stdin):
    """It used to log one line and exit 0: at once alone, at stdin's end beside it, and in
    --once (where a server is not run, but its port is taken all the same)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        conf = tmp_path / "c.yaml"
        conf.write_text(f"""sources:
  lines: {{type: stdin}}
  fwd: {{type: forward, port: {port}}}
sinks:
  out: {{type: file, inputs: [fwd, lines], path: {tmp_path / 'out.jsonl'}}}
""" if stdin else f"""sources:
  fwd: {{type: forward, port: {port}}}
sinks:
  out: {{type: file, inputs: [fwd], path: {tmp_path / 'out.jsonl'}}}
""")
        result = run_pipeline("run", *args, str(conf), input=b'{"a": 1}\n', timeout=30)
    log = result.stderr.decode()
    assert result.returncode == 1, log
    line = 3 if stdin else 2
    assert f"{conf}:{line}: sources.fwd: cannot start: " in log and "address already in use" in log, log
    assert not (tmp_path / "out.jsonl").exists(), log  # nothing ran


def test_an_exporter_port_in_use_names_the_sink_and_its_line(tmp_path):
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        conf = tmp_path / "c.yaml"
        conf.write_text(f"sources:\n  in: {{type: stdin}}\nsinks:\n  prom:\n"
                        f"    type: prometheus_exporter\n    inputs: [in]\n    port: {port}\n")
        result = run_pipeline("run", str(conf), input=b"", timeout=30)
    log = result.stderr.decode()
    assert result.returncode == 1 and f"{conf}:4: sinks.prom: cannot start: " in log, log
