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


class Counted:
    """A field value that counts how often its text is taken: the work of deciding on it."""

    def __init__(self):
        self.texts = 0

    def __str__(self):
        self.texts += 1
        return "warn"


def test_grep_decides_each_distinct_value_once_and_by_its_text():
    value = Counted()
    f = grep(regexp=[{"key": "level", "pattern": "^w"}, {"key": "level", "pattern": "n$"}],
             exclude=[{"key": "level", "pattern": "x"}])
    batch = [("t", 0, {"level": value})] * 1000
    assert len(f.process(batch)) == 1000 and len(f.process(batch)) == 1000
    assert value.texts == 1  # the three rules on `level`, once for the value, not per event
    # 1, 1.0 and True are one key of a dict, three texts here; a list is matched as its text
    one = grep(regexp=[{"key": "n", "pattern": "^1$"}])
    values = [1, 1.0, True, "1", None, [1], "true"]
    assert [r["n"] for r in records(one.process([("t", 0, {"n": v}) for v in values]))] == [1, "1"]
    assert [r["n"] for r in records(grep(regexp=[{"key": "n", "pattern": "^(1.0|true|\\[1\\])$"}]).process(
        [("t", 0, {"n": v}) for v in values]))] == [1.0, True, [1], "true"]


def test_grep_many_distinct_values_still_decided_right(monkeypatch):
    from pipeline.filters import grep as module
    monkeypatch.setattr(module, "MEMO_SIZE", 10)
    f = grep(regexp=[{"key": "id", "pattern": "7"}], exclude=[{"key": "id", "pattern": "^1"}])
    batch = [("t", 0, {"id": i}) for i in range(200)]
    expected = [i for i in range(200) if "7" in str(i) and not str(i).startswith("1")]
    for _ in range(3):  # the memo outgrows its size, then the rules are matched directly
        assert [r["id"] for r in records(f.process(batch))] == expected
    assert f.keys[0].memo is None


def test_record_remove_keep_and_set_together():
    f = make_plugin("filter", "record", set={"a": "${record.b}", "b": "new", "t": "${tag}"}, remove=["a", "b", "c"])
    assert f.process([("x.y", 0, {"a": 1, "b": 2, "c": 3, "d": 4})])[0][2] == {"a": 2, "b": "new", "t": "x.y", "d": 4}
    kept = make_plugin("filter", "record", keep=["a", "z"], set={"t": "${tag_parts[0]}", "n": 5})
    assert [r for _, _, r in kept.process([("x.y", 0, {"a": 1, "b": 2}), ("q", 0, {"b": 2})])] == [
        {"a": 1, "t": "x", "n": 5}, {"t": "q", "n": 5}]
    nothing = make_plugin("filter", "record", remove=["b"])
    original = {"a": 1, "b": 2}
    assert nothing.process([("t", 0, original)])[0][2] == {"a": 1} and original == {"a": 1, "b": 2}
