"""Source tail through the parsers: a real nginx access log, multiline records through a regex,
and lines that do not parse (to `_errors`, their position delivered all the same)."""

from __future__ import annotations

import json
import time

import pytest
from forward_peers import Receiver
from helpers import FIXTURES, ROOT, run_pipeline, wait_for
from log_programs import run_nginx
from tail_peers import once

TIMES = ", time_key: t, time_format: float"


def test_a_real_nginx_access_log_gives_records_with_their_event_times(tmp_path):
    logs = tmp_path / "nginx"
    logs.mkdir()
    access, _ = run_nginx(logs)
    log = logs / "access.log"
    rows, _ = once(tmp_path, f"path: {log}, read_from_head: true, format: nginx, path_key: file",
                   errors=True, sink=TIMES)
    assert not (tmp_path / "errors.jsonl").exists()
    assert len(rows) == len(access) == 3
    # nginx's stamp has whole seconds: the event time is that second, not the time of reading
    assert all(r["t"] == int(r["t"]) and abs(r.pop("t") - time.time()) < 120 for r in rows)
    assert rows[1] == {"tag": "t", "file": str(log), "remote": "127.0.0.1", "user": "-", "method": "GET",
                       "path": "/missing?q=%22x%22", "protocol": "HTTP/1.1", "status": 404,
                       "size": rows[1]["size"], "referer": "http://ref/x?a=\\x22b\\x22",
                       "agent": "Mozilla/5.0 \\x22quoted\\x22"}
    assert rows[2]["path"] == "/caf\\xC3\\xA9/\\x22q\\x22" and isinstance(rows[2]["size"], int)


# without flags: the pattern a user writes first, whose `.` takes the trace's lines all the same
@pytest.mark.parametrize("flags", ["(?s)", ""])
def test_multiline_records_are_parsed_as_one_text_by_a_regex(tmp_path, flags):
    log = tmp_path / "java.log"
    log.write_bytes((FIXTURES / "multiline" / "java_nested_causes.log").read_bytes())
    fmt = (f"{{type: regex, pattern: '{flags}(?P<time>\\S+ \\S+) (?P<level>[A-Z]+) (?P<message>.*)', "
           "time_key: time, time_format: '%Y-%m-%d %H:%M:%S', timezone: UTC}")
    rows, _ = once(tmp_path, f"path: {log}, read_from_head: true, multiline: {{start: '^\\d{{4}}-'}}, "
                             f"format: {fmt}", errors=True, sink=TIMES)
    assert not (tmp_path / "errors.jsonl").exists()
    assert [r["level"] for r in rows] == ["INFO", "ERROR", "INFO", "ERROR", "INFO"]
    failed = rows[1]["message"].split("\n")
    assert failed[0] == "request failed" and failed[1].startswith("java.lang.RuntimeException")
    assert failed[-1].strip() == "... 9 more"
    assert sum(line.startswith("Caused by:") for line in failed) == 2
    assert rows[1]["t"] == 1704110400.0  # 2024-01-01 12:00:00 UTC


def test_a_line_that_does_not_parse_goes_to_errors_and_its_position_is_delivered(tmp_path):
    log = tmp_path / "access.log"
    good = (FIXTURES / "logs" / "nginx-access.log").read_text().splitlines()
    log.write_text(f"{good[0]}\nnot an access log line\n{good[1]}\n")
    source = f"path: {log}, read_from_head: true, format: nginx"
    rows, _ = once(tmp_path, source, errors=True)
    assert [r["status"] for r in rows] == [200, 404]
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [(e["kind"], e["origin"], e["message"]) for e in errors] == [
        ("parse_error", str(log), "not an access log line")]
    positions = [json.loads(line) for line in (tmp_path / "state" / "t.positions").read_text().splitlines()]
    assert [p["offset"] for p in positions] == [log.stat().st_size]
    with open(log, "a") as f:
        f.write(good[2] + "\n")
    rows, _ = once(tmp_path, source, errors=True)
    # the bad line is not read again: only the line written since
    assert [r["path"] for r in rows] == ["/caf\\xC3\\xA9/\\x22q\\x22"]
    assert len((tmp_path / "errors.jsonl").read_text().splitlines()) == 1


def test_the_nginx_logs_example_ships_parsed_new_lines_to_a_forward_server(tmp_path):
    """conf/nginx-logs.yaml as cron or in_exec runs it: the first run finds no log yet; then
    nginx writes its logs, and the next run ships their lines parsed, health checks dropped."""
    logs = tmp_path / "nginx"
    logs.mkdir()
    receiver = Receiver(tmp_path)
    env = {"NGINX_LOGS": str(logs), "FLUENTD_PORT": str(receiver.port), "PIPELINE_STATE_DIR": str(tmp_path / "state")}
    conf = str(ROOT / "conf" / "nginx-logs.yaml")
    try:
        first = run_pipeline("run", "--once", conf, env=env)
        assert first.returncode == 0, first.stderr.decode()
        access, errors = run_nginx(logs)
        health = access[0].replace(b"GET / ", b"GET /healthz ")
        assert health != access[0]
        with open(logs / "access.log", "ab") as f:
            f.write(health + b"\n")
        second = run_pipeline("run", "--once", conf, env=env)
        assert second.returncode == 0, second.stderr.decode()
        written = (logs / "error.log").read_bytes().count(b"\n")  # nginx adds lines as it stops
        assert written >= len(errors)
        assert wait_for(lambda: len(receiver.records()) >= len(access) + written)
    finally:
        receiver.stop()
    rows = receiver.records()
    shipped = [r for r in rows if r["tag"] == "nginx.access"]
    assert len(shipped) == len(access)  # the /healthz line was dropped by the grep filter
    assert not [r for r in shipped if r["path"].startswith("/healthz")]
    assert all(isinstance(r["status"], int) and r["service"] == "nginx" and r["host"] for r in shipped)
    assert len([r for r in rows if r["tag"] == "nginx.error" and r["level"]]) == written
