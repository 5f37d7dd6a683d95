"""Filters parse, grep and record: fluentd's <filter parser>, filter_grep, record_transformer."""

from __future__ import annotations

import socket

from helpers import FIXTURES, make_plugin, run_pipeline

NGINX = (FIXTURES / "logs" / "nginx-access.log").read_text().splitlines()


def test_parse_replaces_the_record_and_takes_the_time():
    f = make_plugin("filter", "parse", field="log", format="nginx")
    [(tag, t, record)] = f.process([("docker.web", 5, {"log": NGINX[0], "container_id": "abc"})])
    assert tag == "docker.web" and t == 1796116821 * 10**9
    assert record["status"] == 200 and "container_id" not in record and "log" not in record


def test_parse_keep_original_remove_field_prefix():
    f = make_plugin("filter", "parse", field="log", format={"type": "logfmt"}, keep_original=True,
                    remove_field=True, prefix="l_")
    [(_, t, record)] = f.process([("t", 5, {"log": "a=1 b=x", "c": 2})])
    assert t == 5 and record == {"c": 2, "l_a": "1", "l_b": "x"}
    kept = make_plugin("filter", "parse", field="log", format="logfmt", keep_original=True)
    assert kept.process([("t", 5, {"log": "a=1"})])[0][2] == {"log": "a=1", "a": "1"}


def test_parse_failures_follow_on_error():
    errors: list = []
    f = make_plugin("filter", "parse", field="log", format="nginx", errors=errors)
    assert f.process([("t", 1, {"log": "nope"}), ("t", 1, {"other": 1}), ("t", 1, {"log": NGINX[1]})])[0][2]["status"] == 404
    assert [e[2]["error"] for e in errors] == ["cannot parse as nginx: does not match the pattern",
                                               "cannot parse as nginx: no text field 'log'"]
    assert errors[0][2]["origin"] == "field 'log' of 't'" and errors[0][2]["message"] == "nope"
    keep = make_plugin("filter", "parse", field="log", format={"type": "nginx", "on_error": "keep"})
    assert keep.process([("t", 1, {"log": "nope", "x": 1})]) == [
        ("t", 1, {"log": "nope", "x": 1, "parse_error": "does not match the pattern"})]


def grep(**options):
    return make_plugin("filter", "grep", **options)


EVENTS = [("t", 0, r) for r in (
    {"level": "error", "kubernetes": {"labels": {"app": "web"}}, "code": 500},
    {"level": "info", "kubernetes": {"labels": {"app": "web"}}, "code": 200},
    {"level": "error", "kubernetes": {"labels": {"app": "db"}}},
    {"message": "no level"},
    {"level": "error", "flag": True},
)]


def records(batch):
    return [r for _, _, r in batch]


def test_grep_regexp_all_must_match_with_nested_keys():
    f = grep(regexp=[{"key": "level", "pattern": "^err"}, {"key": "$.kubernetes.labels.app", "pattern": "web|db"}])
    assert records(f.process(EVENTS)) == [EVENTS[0][2], EVENTS[2][2]]
    assert records(grep(regexp=[{"key": "kubernetes.labels.app", "pattern": "^db$"}]).process(EVENTS)) == [EVENTS[2][2]]


def test_grep_exclude_any_drops_and_missing_keys():
    f = grep(exclude=[{"key": "code", "pattern": "^5"}, {"key": "flag", "pattern": "true"}])
    assert records(f.process(EVENTS)) == [EVENTS[1][2], EVENTS[2][2], EVENTS[3][2]]
    # a missing key never matches regexp: the event without `level` goes
    assert EVENTS[3][2] not in records(grep(regexp=[{"key": "level", "pattern": ".*"}]).process(EVENTS))


def test_record_set_placeholders_remove_keep():
    f = make_plugin("filter", "record", set={
        "host": "${hostname}", "env": "prod", "service": "${tag_parts[1]}", "last": "${tag_parts[-1]}",
        "level": "${record.level}", "code": "${record.http.code}", "text": "${tag}:${record.http.code}:${record.none}",
        "n": 3}, remove=["secret"])
    [(tag, _, record)] = f.process([("k8s.web.prod", 0, {"level": "warn", "secret": "x", "http": {"code": 404}})])
    assert record == {"level": "warn", "http": {"code": 404}, "host": socket.gethostname(), "env": "prod",
                      "service": "web", "last": "prod", "code": 404, "text": "k8s.web.prod:404:", "n": 3}
    kept = make_plugin("filter", "record", keep=["a"], set={"b": "${record.c}"})
    assert kept.process([("t", 0, {"a": 1, "c": 2, "d": 3})])[0][2] == {"a": 1, "b": 2}


def test_check_refuses_bad_rules_and_placeholders(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("sources:\n  in: {type: stdin}\nfilters:\n"
                    "  g: {type: grep, inputs: [in], regexp: [{key: 'a..b', pattern: '(x'}]}\n"
                    "  r: {type: record, inputs: [g], set: {a: '${tag_part[1]}', b: '${record.}'}}\n"
                    "  p: {type: parse, inputs: [r], field: log, format: {type: regex, pattern: '('}}\n"
                    "sinks:\n  out: {type: stdout, inputs: [p]}\n")
    result = run_pipeline("check", str(conf))
    err = result.stderr.decode()
    assert result.returncode == 2
    for expected in ("c.yaml:4: filters.g.regexp[0].key: expected a key path",
                     "c.yaml:4: filters.g.regexp[0].pattern: not a valid regular expression",
                     "c.yaml:5: filters.r.set.a: unknown placeholder ${tag_part[1]}",
                     "c.yaml:5: filters.r.set.b: unknown placeholder ${record.}",
                     "c.yaml:6: filters.p.format.pattern: not a valid regular expression"):
        assert expected in err, err
