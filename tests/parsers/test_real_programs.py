"""The preset formats on what nginx, Apache httpd and rsyslogd write, started for real here,
parsed by the real CLI (`stdin -> format -> file`, errors to a file of their own)."""

from __future__ import annotations

import json
import time

import pytest
from helpers import run_pipeline
from log_programs import logger_datagrams, run_apache, run_nginx, run_rsyslog

from pipeline.config.options import Errors
from pipeline.engine.context import Context
from pipeline.parsers import Format, build


def parse_cli(tmp_path, fmt: str, lines: list[bytes]) -> tuple[list[dict], list[dict]]:
    """Records (with the event time as `t`, unix seconds) and error records."""
    run = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    run.mkdir()
    conf, out, err = run / "c.yaml", run / "out.jsonl", run / "errors.jsonl"
    conf.write_text(f"sources:\n  in: {{type: stdin, format: {fmt}}}\n"
                    f"sinks:\n  out: {{type: file, inputs: [in], path: '{out}', time_key: t, time_format: float, tag_key: ''}}\n"
                    f"  err: {{type: file, inputs: [_errors], path: '{err}'}}\n")
    result = run_pipeline("run", "--once", str(conf), input=b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.stderr
    read = lambda p: [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []  # noqa: E731
    return read(out), read(err)


def recent(t: float) -> bool:
    return abs(t - time.time()) < 120


@pytest.fixture
def logs_dir(tmp_path):
    d = tmp_path / "program"
    d.mkdir()
    return d


def test_nginx_access_and_error_logs(tmp_path, logs_dir):
    access, error = run_nginx(logs_dir)
    records, errors = parse_cli(tmp_path, "nginx", access)
    assert errors == [] and len(records) == 3
    assert all(recent(r.pop("t")) for r in records)
    assert records[1] == {"remote": "127.0.0.1", "user": "-", "method": "GET", "path": "/missing?q=%22x%22",
                          "protocol": "HTTP/1.1", "status": 404, "size": records[1]["size"],
                          "referer": "http://ref/x?a=\\x22b\\x22", "agent": "Mozilla/5.0 \\x22quoted\\x22"}
    assert records[2]["path"] == "/caf\\xC3\\xA9/\\x22q\\x22" and records[2]["agent"] == "-"
    records, errors = parse_cli(tmp_path, "nginx_error", error)
    assert errors == [] and len(records) == len(error)
    opened = [r for r in records if r["level"] == "error"]
    assert len(opened) == 2 and all(recent(r["t"]) for r in records)
    assert 'request: "GET /café/"q" HTTP/1.1"' in opened[1]["message"] and isinstance(opened[1]["connection"], int)


def test_apache_access_and_error_logs(tmp_path, logs_dir):
    access, error = run_apache(logs_dir)
    records, errors = parse_cli(tmp_path, "apache2", access)
    assert errors == [] and len(records) == 3
    assert all(recent(r.pop("t")) for r in records)
    assert records[1]["referer"] == 'http://ref/x?a=\\"b\\"' and records[1]["agent"] == 'Mozilla/5.0 \\"quoted\\"'
    assert records[2]["path"] == '/caf\\xc3\\xa9/\\"q\\"' and records[2]["status"] == 404
    records, errors = parse_cli(tmp_path, "apache_error", error)
    assert errors == [] and len(records) == len(error)
    assert all(recent(r["t"]) for r in records)
    served = [r for r in records if r["client"]]
    assert served and all(r["client"].startswith("127.0.0.1:") and r["module"] == "core" for r in served)
    assert served[-1]["message"].startswith("AH00128: File does not exist") and served[-1]["level"] == "info"


def test_rsyslog_rfc3164_and_rfc5424_files(tmp_path, logs_dir):
    files = run_rsyslog(logs_dir)
    for name in ("rfc3164", "iso"):
        records, errors = parse_cli(tmp_path, "syslog", files[name])
        assert errors == [] and len(records) == 3 and all(recent(r.pop("t")) for r in records), name
        assert records[0] == {"host": records[0]["host"], "ident": "myapp", "pid": "4242",
                              "message": 'hello 3164 "quoted" café'}
    records, errors = parse_cli(tmp_path, "syslog", files["rfc5424"])
    assert errors == [] and len(records) == 3 and all(recent(r.pop("t")) for r in records)
    assert records[1]["structured_data"]["exampleSDID@32473"] == {"iut": "3", "eventSource": 'App "x"'}
    assert records[1]["msgid"] == "ID47" and records[1]["message"] == "hello 5424 café"
    assert records[2]["pri"] == 16 * 8 + 3 and records[2]["ident"] == "other" and records[2]["pid"] is None


def test_what_logger_sends_to_dev_log(tmp_path):
    """A program's own messages to /dev/log: no hostname in RFC 3164, a message may span
    lines (what a syslog source gets on its unix socket)."""
    grams = logger_datagrams(tmp_path, [["-t", "myapp", "-i", "hello"], ["-t", "myapp", "two\nlines"],
                                        ["--rfc3164", "-t", "myapp", "-p", "local0.err", "with host"],
                                        ["--rfc5424", "-t", "myapp", "hello 5424"]])
    conf = Format().convert({"type": "syslog"}, "format", Errors(), None)
    parser = build(conf, Context("in", "source"))
    records = [parser.parse(g.decode())[1] for g in grams]
    assert records[0] == {"pri": 13, "ident": "myapp", "pid": records[0]["pid"], "message": "hello"}
    assert records[0]["pid"].isdigit()
    assert records[1] == {"pri": 13, "ident": "myapp", "pid": None, "message": "two\nlines"}
    assert records[2]["pri"] == 16 * 8 + 3 and records[2]["host"] and records[2]["message"] == "with host"
    assert records[3]["ident"] == "myapp" and records[3]["message"] == "hello 5424" and records[3]["host"]
