"""fluentd's tag pattern semantics, cases as in fluentd's test/test_match.rb."""

import pytest

from pipeline.engine.tagmatch import matcher


@pytest.mark.parametrize("pattern, tag", [
    ("a", "a"), ("a.b", "a.b"),
    ("a.*", "a.b"), ("a.*", "a.c"), ("a.*.c", "a.b.c"), ("*", "a"),
    ("a.**", "a"), ("a.**", "a.b"), ("a.**", "a.b.c"), ("**", "a"), ("**", "a.b.c"),
    ("**.c", "c"), ("**.c", "a.b.c"), ("a.**.c", "a.c"), ("a.**.c", "a.b.c"), ("a.**.c", "a.b.d.c"),
    ("{a,b}", "a"), ("{a,b}", "b"), ("{a,b}.c", "b.c"), ("a.{b,c}.d", "a.c.d"),
    ("{a.**,b}", "a.x.y"), ("{a.**,b}", "b"), ("a.{b,{c,d}}", "a.d"),
    ("a b", "b"), ("x.* a.**", "a.z"),
    (r"a\*", "a*"), ("/^a\\d+$/", "a12"),
])
def test_matches(pattern, tag):
    assert matcher(pattern)(tag)


@pytest.mark.parametrize("pattern, tag", [
    ("a", "b"), ("a.b", "aab"), ("a.b", "a.b.c"),
    ("a.*", "ab"), ("a.*", "a.b.c"), ("a.*.c", "a.c"), ("*", "a.b"),
    ("a.**", "ab"), ("a.**", "b.a"), ("**.c", "ac"), ("a.**.c", "ac"), ("a.**.c", "a.cd"),
    ("{a,b}", "c"), ("{a,b}", "ab"), ("{a,b}.c", "a.d"),
    ("a b", "c"), (r"a\*", "ab"), ("/^a\\d+$/", "ab"),
])
def test_does_not_match(pattern, tag):
    assert not matcher(pattern)(tag)


def test_list_of_patterns_and_none():
    m = matcher(["uwsgi.*", "docker.**"])
    assert m("uwsgi.app") and m("docker") and not m("uwsgi.app.x")
    assert matcher(None) is None
