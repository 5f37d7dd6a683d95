"""Each format on the captured real logs and on the cases the docs promise; event times;
on_error; what `check` refuses."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from helpers import FIXTURES, run_pipeline

from pipeline.config.options import Errors
from pipeline.engine.context import Context
from pipeline.parsers import Format, build
from pipeline.parsers._time import parser_of, rfc3164_year

LOGS = FIXTURES / "logs"


def parser(spec, errors=None):
    problems = Errors()
    conf = Format().convert(spec, "format", problems, None)
    assert not problems, problems.lines()
    return build(conf, Context("p", "source", on_error=errors.append if errors is not None else None))


def lines(name):
    return (LOGS / name).read_text(encoding="utf-8").splitlines()


def ts(text):
    return int(datetime.fromisoformat(text).timestamp()) * 10**9


@pytest.mark.parametrize("fmt, name", [
    ("nginx", "nginx-access.log"), ("nginx_error", "nginx-error.log"), ("apache2", "apache2-access.log"),
    ("apache_error", "apache2-error.log"), ("syslog", "rsyslog-rfc3164.log"), ("syslog", "rsyslog-rfc5424.log"),
    ("syslog", "rsyslog-iso.log"),
])
def test_every_captured_line_parses(fmt, name):
    errors: list = []
    batch = parser(fmt, errors).parse_lines(lines(name), "t", "test")
    assert errors == [] and len(batch) == len(lines(name))


def test_nginx_fields_types_and_time():
    batch = parser("nginx").parse_lines(lines("nginx-access.log"), "web", "test")
    tag, t, record = batch[2]
    assert tag == "web" and t == ts("2026-12-01T09:20:21+00:00")
    assert record == {"remote": "127.0.0.1", "user": "-", "method": "GET", "path": "/caf\\xC3\\xA9/\\x22q\\x22",
                      "protocol": "HTTP/1.1", "status": 404, "size": 153, "referer": "-", "agent": "-"}
    t2, kept = parser({"type": "nginx", "keep_time_key": True}).parse(lines("nginx-access.log")[0])
    assert kept["time"] == "01/Dec/2026:09:20:21 +0000" and t2 == t


def test_apache_error_time_is_in_the_timezone_given():
    line = lines("apache2-error.log")[0]
    t_utc, record = parser({"type": "apache_error", "timezone": "UTC"}).parse(line)
    t_tokyo, _ = parser({"type": "apache_error", "timezone": "Asia/Tokyo"}).parse(line)
    assert t_utc - t_tokyo == 9 * 3600 * 10**9
    assert record["module"] == "mpm_event" and record["level"] == "notice" and isinstance(record["pid"], int)


def test_timezone_default_is_the_machines(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("sources:\n  in: {type: stdin, format: nginx_error}\n"
                    "sinks:\n  out: {type: stdout, inputs: [in], time_key: t, time_format: unix}\n")
    result = run_pipeline("run", "--once", str(conf), input=b"2026/12/01 09:00:00 [error] 1#1: boom\n",
                          env={"TZ": "Asia/Tokyo"})
    assert json.loads(result.stdout)["t"] == ts("2026-12-01T00:00:00+00:00") // 10**9


def test_syslog_rfc5424_structured_data_and_nil_values():
    _, record = parser("syslog").parse(lines("rsyslog-rfc5424.log")[1])
    assert record["structured_data"] == {"timeQuality": {"tzKnown": "1", "isSynced": "0"},
                                         "exampleSDID@32473": {"iut": "3", "eventSource": 'App "x"'}}
    assert record["pri"] == 13 and record["pid"] is None and record["ident"] == "myapp"


def test_rfc3164_year_is_this_one_or_last_for_december_in_january():
    january = datetime(2027, 1, 1, 0, 0, 5).timestamp()
    assert rfc3164_year(12, january) == 2026 and rfc3164_year(1, january) == 2027
    assert rfc3164_year(12, datetime(2026, 12, 31).timestamp()) == 2026
    parse = parser_of("syslog", "UTC", clock=lambda: january)
    assert parse("Dec 31 23:59:58") == ts("2026-12-31T23:59:58+00:00")
    assert parse("Jan  1 00:00:03") == ts("2027-01-01T00:00:03+00:00")


def test_a_repeated_stamp_is_parsed_once():
    calls = []
    parse = parser_of("syslog", "UTC", clock=lambda: calls.append(1) or datetime(2026, 5, 1).timestamp())
    assert parse("Oct  9 13:55:36") == parse("Oct  9 13:55:36") != parse("Oct  9 13:55:37")
    assert len(calls) == 2


@pytest.mark.parametrize("fmt, value, expected", [
    ("unix", "1791640536.5", 1791640536_500000000), ("unix", 1791640536, 1791640536_000000000),
    ("unix_ms", "1791640536123", 1791640536_123000000), ("unix_ns", "1791640536123456789", 1791640536123456789),
    ("iso8601", "2026-10-10T13:55:36.25Z", 1791640536_250000000),
    ("%Y-%m-%d %H:%M:%S", "2026-10-10 13:55:36", 1791640536_000000000),
])
def test_time_formats(fmt, value, expected):
    assert parser_of(fmt, "UTC")(value) == expected


def test_types_and_dash_as_null():
    p = parser({"type": "regex", "pattern": r"(?P<a>\S+) (?P<b>\S+) (?P<c>\S+)",
                "types": {"a": "int", "b": "float", "c": "bool"}})
    assert p.parse("- 1.5 true") == (None, {"a": None, "b": 1.5, "c": True})


@pytest.mark.parametrize("mode", ["error", "keep", "drop"])
def test_on_error(mode):
    errors: list = []
    p = parser({"type": "regex", "pattern": r"(?P<n>\d+)$", "types": {"n": "int"}, "on_error": mode}, errors)
    batch = p.parse_lines(["12", "oops", "34"], "t", "the file x.log")
    assert [r for _, _, r in batch if "n" in r] == [{"n": 12}, {"n": 34}]
    assert p.ctx.counters["parse_errors"] == 1
    kept = [r for _, _, r in batch if "n" not in r]
    if mode == "keep":
        assert kept == [{"message": "oops", "parse_error": "does not match the pattern"}] and errors == []
    elif mode == "drop":
        assert kept == [] and errors == []
    else:
        assert kept == [] and len(errors) == 1
        assert errors[0][2] | {"error": "", "kind": ""} == {
            "component": "p", "error": "", "kind": "", "origin": "the file x.log", "sample": "oops", "message": "oops"}


def test_a_time_that_does_not_parse_is_an_error():
    errors: list = []
    p = parser({"type": "json", "time_key": "ts", "time_format": "unix"}, errors)
    batch = p.parse_lines(['{"ts": "soon", "a": 1}', '{"ts": 1791640536, "a": 2}'], "t", "o")
    assert [(t, r) for _, t, r in batch] == [(1791640536 * 10**9, {"a": 2})]
    assert "field 'ts': not a number" in errors[0][2]["error"]


@pytest.mark.parametrize("spec, line, expected", [
    ("ltsv", "host:127.0.0.1\tpath:/a:b\tmsg:x\\ty", {"host": "127.0.0.1", "path": "/a:b", "msg": "x\ty"}),
    ("logfmt", 'level=info msg="hello \\"w\\" x" dur=1.5ms ok empty=',
     {"level": "info", "msg": 'hello "w" x', "dur": "1.5ms", "ok": True, "empty": ""}),
    ({"type": "csv", "keys": ["a", "b", "c"]}, '1,"x, ""y""",', {"a": "1", "b": 'x, "y"', "c": ""}),
    ({"type": "csv", "keys": ["a", "b"], "delimiter": ";"}, "1;2", {"a": "1", "b": "2"}),
    # past 64 bits msgpack cannot hold it: its exact digits (docs/records.md)
    ("json", '{"a": 123456789012345678901234567890}', {"a": "123456789012345678901234567890"}),
    ("none", "any thing", {"message": "any thing"}),
])
def test_text_formats(spec, line, expected):
    assert parser(spec).parse(line)[1] == expected


@pytest.mark.parametrize("spec, line", [
    ("ltsv", "no label here"), ({"type": "csv", "keys": ["a", "b"]}, "1,2,3"), ("json", "[1]"),
    ("logfmt", 'a="unterminated'), ("syslog", "not syslog"),
])
def test_text_formats_refuse(spec, line):
    errors: list = []
    assert parser(spec, errors).parse_lines([line], "t", "o") == [] and len(errors) == 1


def test_check_reports_every_format_problem_with_its_line(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text(
        "sources:\n"
        "  a:\n    type: stdin\n    format:\n      type: regex\n      pattern: '(?P<x>[a-z'\n"
        "  b: {type: stdin, format: {type: regex, pattern: '[a-z]+'}}\n"
        "  c: {type: stdin, format: ngnix}\n"
        "  d: {type: stdin, format: {type: nginx, timezone: Mars/Base, time_format: '%Q', colour: red}}\n"
        "  e: {type: exec, command: date, format: {type: csv, keys: [a], delimiter: ';;'}}\n"
        "  f: {type: stdin, format: {type: json, types: {a: integr, b: 'time:%Q', c: 'int:x'}}}\n"
        "  g: {type: stdin, format: {type: json, time_format: '%Y-%m-%d'}}\n"
        "  h: {type: stdin, format: {type: json, time_key: ts, time_format: '%Y-%m-%d'}}\n"
        "sinks:\n  out: {type: stdout, inputs: [a, b, c, d, e, f, g, h]}\n")
    result = run_pipeline("check", str(conf))
    assert result.returncode == 2
    err = result.stderr.decode()
    for expected in ("c.yaml:6: sources.a.format.pattern: not a valid regular expression",
                     "c.yaml:7: sources.b.format.pattern: the pattern has no named group",
                     "c.yaml:8: sources.c.format: unknown format 'ngnix' (did you mean 'nginx'?)",
                     "c.yaml:9: sources.d.format.timezone: unknown time zone 'Mars/Base'",
                     "c.yaml:9: sources.d.format.time_format: not a strptime format",
                     "c.yaml:9: sources.d.format.colour: unknown option",
                     "c.yaml:10: sources.e.format.delimiter: expected one character",
                     "c.yaml:11: sources.f.format.types.a: unknown type 'integr' (did you mean 'int'?)",
                     "c.yaml:11: sources.f.format.types.b: not a strptime format",
                     "c.yaml:11: sources.f.format.types.c: int takes no `:` option",
                     "c.yaml:12: sources.g.format.time_format: warning: time_format without time_key"):
        assert expected in err, err
    assert err.count("warning") == 1


def test_stdin_and_exec_read_with_a_parser(tmp_path):
    log = LOGS / "nginx-access.log"
    conf = tmp_path / "c.yaml"
    conf.write_text(f"sources:\n  in: {{type: stdin, format: nginx, tag: web}}\n"
                    f"  ex: {{type: exec, command: [cat, '{log}'], interval: 0, format: nginx, tag: ex}}\n"
                    "sinks:\n  out: {type: stdout, inputs: [in, ex], tag_key: tag, time_key: t, time_format: unix}\n")
    result = run_pipeline("run", "--once", str(conf), input=log.read_bytes())
    assert result.returncode == 0, result.stderr
    records = [json.loads(x) for x in result.stdout.splitlines()]
    assert sorted(r["tag"] for r in records) == ["ex"] * 3 + ["web"] * 3
    assert {r["t"] for r in records} == {ts("2026-12-01T09:20:21+00:00") // 10**9}


def test_syslog_messages_keep_their_line_breaks():
    for line in ("<13>Oct  9 13:55:36 host app[1]: Hi,\nfrom\nFluentd!",
                 "<13>1 2026-10-09T13:55:36Z host app 1 - - Hi,\nfrom\nFluentd!"):
        assert parser("syslog").parse(line)[1]["message"] == "Hi,\nfrom\nFluentd!"


@pytest.mark.parametrize("line, expected", [
    ("<133>Jun 13 16:33:35 haproxy[73411]: Proxy sticky-servers started.",
     {"pri": 133, "ident": "haproxy", "pid": "73411", "message": "Proxy sticky-servers started."}),
    ("<14>Jun 13 16:33:35 sshd: session opened", {"pri": 14, "ident": "sshd", "pid": None, "message": "session opened"}),
    ("Jun  3 16:33:35 myhost cron[12]: run", {"host": "myhost", "ident": "cron", "pid": "12", "message": "run"}),
    ("Jun 3 16:33:35 myhost kernel: [1.5] x", {"host": "myhost", "ident": "kernel", "pid": None, "message": "[1.5] x"}),
])
def test_rfc3164_lines_with_and_without_a_hostname(line, expected):
    assert parser({"type": "syslog", "keep_time_key": False}).parse(line)[1] == expected


def test_rfc5424_without_pri_when_the_format_says_so():
    _, record = parser({"type": "syslog", "message_format": "rfc5424"}).parse(
        "2017-02-06T13:14:15.003Z 192.168.0.1 fluentd 11 ID1 [a b=\"1\"] Hi")
    assert record == {"host": "192.168.0.1", "ident": "fluentd", "pid": "11", "msgid": "ID1",
                      "structured_data": {"a": {"b": "1"}}, "message": "Hi"}


@pytest.mark.parametrize("line, t, expected", [
    ("[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration",
     "2000-10-11T14:32:52+00:00", {"level": "error", "client": "127.0.0.1",
                                   "message": "client denied by server configuration"}),
    ("[Wed Oct 11 14:32:52 2000] [notice] Apache/2.2.15 (Unix) configured -- resuming normal operations",
     "2000-10-11T14:32:52+00:00", {"level": "notice", "message": "Apache/2.2.15 (Unix) configured -- resuming normal operations"}),
    ("[Wed Oct 11 14:32:52.5 2023] [core:error] [client 10.0.0.1:5678] AH00126: Invalid URI",
     "2023-10-11T14:32:52.5+00:00", {"module": "core", "level": "error", "client": "10.0.0.1:5678",
                                     "message": "AH00126: Invalid URI"}),
])
def test_apache_error_22_and_24_without_pid(line, t, expected):
    got_t, record = parser({"type": "apache_error", "timezone": "UTC"}).parse(line)
    assert {k: v for k, v in record.items() if v is not None} == expected
    assert got_t == int(datetime.fromisoformat(t).timestamp() * 10**9)


def test_null_values_and_the_types_peers_have():
    p = parser({"type": "ltsv", "delimiter_pattern": r"\s+", "label_delimiter": "=",
                "null_value_pattern": "-|null", "null_empty_string": True,
                "types": {"tags": "array:|", "at": "time:%d/%b/%Y:%H:%M:%S%z", "iso": "time", "n": "integer",
                          "h": "hex"}})
    assert p.parse("a=- b=null c= d=nullable tags=x|y at=28/Feb/2013:12:00:00+0900\tn=7  h=ff "
                   "iso=2013-02-28T12:00:00.5+09:00")[1] == {
        "a": None, "b": None, "c": None, "d": "nullable", "tags": ["x", "y"],
        "at": "2013-02-28T03:00:00.000000000Z", "n": 7, "h": 255, "iso": "2013-02-28T03:00:00.500000000Z"}


def test_a_regex_dot_takes_line_breaks_in_a_multiline_text():
    p = parser({"type": "regex", "pattern": r"^(?P<time>\S+ \S+) (?P<level>\w+) (?P<message>.*)"})
    text = "2024-01-01 12:00:00 ERROR failed\njava.lang.RuntimeException: x\n\tat Trace.main(Trace.java:10)"
    assert p.parse(text)[1]["message"] == "failed\njava.lang.RuntimeException: x\n\tat Trace.main(Trace.java:10)"
    assert parser({"type": "nginx_error"}).parse("2026/10/09 13:55:36 [error] 1#1: a\nb")[1]["message"] == "a\nb"
    assert parser({"type": "regex", "pattern": r"(?P<first>(?-s:.*))"}).parse("a\nb")[1] == {"first": "a"}


def test_records_with_a_time_field_and_no_time_key_say_so_once(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("sources:\n  in: {type: stdin, format: {type: json}}\n"
                    "sinks:\n  out: {type: stdout, inputs: [in]}\n")
    result = run_pipeline("run", "--once", str(conf), input=b'{"time": "2026-10-09T13:55:36Z", "a": 1}\n' * 3)
    assert result.returncode == 0 and result.stdout.count(b'"time"') == 3
    assert result.stderr.decode().count("records have a `time` field, but no time_key is set") == 1
