"""Config loading: environment expansion, tags, fan-in/fan-out, match and state_dir."""

from __future__ import annotations

import time

import pytest

from pipeline.config.graph import ConfigError, load_config


def load(tmp_path, text, env=None):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(path, env=env or {})


def test_env_expansion_with_defaults_and_types(tmp_path):
    graph = load(tmp_path, """
state_dir: ${STATE:-/var/lib/p}
sources:
  a:
    type: exec
    command: ["echo", "${WORD}"]
    timeout: ${TIMEOUT:-5s}
    tag: "${TAG:-app}.${SUFFIX:-x}"
sinks:
  o:
    type: file
    inputs: [a]
    path: ${DIR}/${tag}.log
    chunk_max_events: ${MAX:-500}
    flush_interval: $${NOT_EXPANDED}
""".replace("flush_interval: $${NOT_EXPANDED}", "tag_key: $${NOT_EXPANDED}"), env={"WORD": "hi", "DIR": "/d", "SUFFIX": "y"})
    a, o = graph.components["a"].conf, graph.components["o"].conf
    assert graph.settings.state_dir == "/var/lib/p"
    assert a.command == ["echo", "hi"]
    assert a.timeout == 5.0
    assert a.tag == "app.y"
    assert o.path == "/d/${tag}.log"  # ${tag} is the file sink's per-event placeholder
    assert o.chunk_max_events == 500 and isinstance(o.chunk_max_events, int)
    assert o.tag_key == "${NOT_EXPANDED}"


def test_empty_variable_takes_the_default(tmp_path):
    graph = load(tmp_path, "sources:\n  a: {type: stdin, tag: '${T:-dflt}'}\nsinks:\n  o: {type: stdout, inputs: [a]}\n",
                 env={"T": ""})
    assert graph.components["a"].conf.tag == "dflt"


def test_a_default_may_hold_placeholders_used_only_when_it_is(tmp_path):
    text = ("state_dir: ${PIPELINE_STATE_DIR:-${XDG_STATE_HOME:-${HOME}/.local/state}/pipeline}\n"
            "sources:\n  a: {type: stdin, tag: '${T:-${UNSET}}'}\nsinks:\n  o: {type: stdout, inputs: [a]}\n")
    assert load(tmp_path, text, env={"HOME": "/h", "T": "t"}).settings.state_dir == "/h/.local/state/pipeline"
    assert load(tmp_path, text, env={"XDG_STATE_HOME": "/x", "T": "t"}).settings.state_dir == "/x/pipeline"
    assert load(tmp_path, text, env={"PIPELINE_STATE_DIR": "/p", "T": "t"}).settings.state_dir == "/p"
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text, env={"HOME": "/h"})
    assert "sources.a.tag: environment variable UNSET is not set" in str(e.value)


def test_fan_in_and_fan_out(tmp_path):
    graph = load(tmp_path, """
sources:
  a: {type: stdin}
  b: {type: exec, command: "true"}
filters:
  f: {type: flatten, inputs: [a, b]}
sinks:
  one: {type: stdout, inputs: [f]}
  two: {type: file, inputs: [f, b], path: /tmp/x}
""")
    c = graph.components
    assert c["a"].outputs == ["f"]
    assert sorted(c["b"].outputs) == ["f", "two"]
    assert sorted(c["f"].outputs) == ["one", "two"]
    assert c["two"].inputs == ["f", "b"]


def test_bad_match_type_is_reported(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "sources:\n  a: {type: stdin}\nsinks:\n  o: {type: stdout, inputs: [a], match: {x: 1}}\n")
    assert "sinks.o.match" in str(e.value)


def test_ids_are_unique_across_sections(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "sources:\n  a: {type: stdin}\nsinks:\n  a: {type: stdout, inputs: [a]}\n")
    assert "id 'a' is already used" in str(e.value)


def problems(tmp_path, text, env=None) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text, env)
    return [line.split(": ", 1)[1] for line in e.value.errors.lines()]


def test_inputs_of_a_component_with_an_unknown_type_are_checked_in_the_same_pass(tmp_path):
    found = problems(tmp_path, """
sources:
  a: {type: stdin}
filters:
  f: {type: flaten, inputs: [a, nope]}
sinks:
  o: {type: stdot, inputs: [f, nope2]}
""")
    assert found == [
        "filters.f.type: unknown filter type 'flaten' (did you mean 'flatten'?); `pipeline plugins` lists them",
        "filters.f.inputs[1]: 'nope' is not a source or filter id",
        "sinks.o.type: unknown sink type 'stdot' (did you mean 'stdout'?); `pipeline plugins` lists them",
        "sinks.o.inputs[1]: 'nope2' is not a source or filter id",
    ]


def test_an_input_listed_twice_is_refused(tmp_path):
    found = problems(tmp_path, "sources:\n  a: {type: stdin}\nsinks:\n  o: {type: stdout, inputs: [a, a]}\n")
    assert found == ["sinks.o.inputs[1]: 'a' is listed twice: each of its events would be taken twice"]


def test_an_unset_variable_is_one_problem_not_two(tmp_path):
    found = problems(tmp_path, "sources:\n  h: {type: http_json, url: '${URL}'}\n"
                     "sinks:\n  o: {type: stdout, inputs: [h]}\n")
    assert found == ["sources.h.url: environment variable URL is not set (use ${URL:-default} for a default)"]


def test_an_expanded_number_is_text_for_a_string_option(tmp_path):
    graph = load(tmp_path, "sources:\n  a:\n    type: stdin\n    tag: ${T}\n"
                 "sinks:\n  o:\n    type: stdout\n    inputs: [a]\n    chunk_max_events: ${T}\n", env={"T": "0123"})
    assert graph.components["a"].conf.tag == "0123"
    assert graph.components["o"].conf.chunk_max_events == 83  # YAML 1.1 reads 0123 as octal


def test_a_source_or_filter_nothing_reads_is_a_warning(tmp_path):
    graph = load(tmp_path, """
sources:
  a: {type: stdin}
  unread: {type: stdin}
filters:
  dead_end: {type: flatten, inputs: [a]}
sinks:
  o: {type: stdout, inputs: [a]}
""")
    assert [w.split(": ", 1)[1] for w in graph.warnings] == [
        "sources.unread: warning: nothing reads this source: no filter or sink lists 'unread' in its inputs",
        "filters.dead_end: warning: nothing reads this filter: no filter or sink lists 'dead_end' in its inputs",
    ]


BILLION_LAUGHS = (
    "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n"
    + "".join(f"{x}: &{x} [{','.join([f'*{prev}'] * 9)}]\n" for prev, x in zip("abcdefgh", "bcdefghi"))
    + "sources: {in: {type: stdin, tag: *i}}\nsinks: {out: {type: stdout, inputs: [in]}}\n")


@pytest.mark.parametrize("text, line, message", [
    (BILLION_LAUGHS, 5, "aliases expand to more than 10000 values"),  # 10^9 values: minutes before
    ("sources:\n  x: " + "[" * 5000 + "]" * 5000 + "\n", 2, "nested more than 100 deep"),  # a RecursionError
], ids=["billion_laughs", "deep"])
def test_check_refuses_configs_that_expand_without_bound(tmp_path, text, line, message):
    from helpers import run_pipeline

    conf = tmp_path / "bomb.yaml"
    conf.write_text(text)
    started = time.monotonic()
    result = run_pipeline("check", str(conf), timeout=30)
    assert time.monotonic() - started < 10
    assert result.returncode == 2
    assert f"{conf}:{line}: {message}" in result.stderr.decode()
    assert b"Traceback" not in result.stderr


def test_a_url_with_an_unclosed_bracket_is_a_config_error(tmp_path):
    # found by tests/test_fuzz.py: urlsplit's ValueError came out of `pipeline check` as a traceback
    from helpers import run_pipeline

    conf = tmp_path / "c.yaml"
    conf.write_text("sources:\n  s: {type: http_json, url: 'http://[127.0.0.1:4000/x'}\n"
                    "sinks:\n  o: {type: stdout, inputs: [s]}\n")
    result = run_pipeline("check", str(conf))
    assert result.returncode == 2
    assert f"{conf}:2: sources.s.url: expected a URL" in result.stderr.decode()
    assert "Invalid IPv6 URL" in result.stderr.decode() and b"Traceback" not in result.stderr


def test_a_misspelled_section_is_one_problem_with_a_did_you_mean(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "sorces:\n  s: {type: stdin}\nsinks:\n  d: {type: stdout, inputs: [s]}\n")
    # not also "sources: missing" and "'s' is not a source or filter id"
    assert e.value.errors.lines() == [f"{tmp_path}/c.yaml:1: sorces: unknown option (did you mean 'sources'?)"]


def test_inputs_may_name_one_id_as_match_and_path_do(tmp_path):
    graph = load(tmp_path, "sources:\n  s: {type: stdin}\nsinks:\n  d: {type: stdout, inputs: s}\n")
    assert graph.components["d"].inputs == ["s"]
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "sources:\n  s: {type: stdin}\nsinks:\n  d: {type: stdout, inputs: 3}\n")
    assert "sinks.d.inputs: expected a list, or one string" in str(e.value)
