"""The command line as a user runs it: version, check, plugins, and every kind of bad config."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from helpers import ROOT, run_pipeline

from pipeline import __version__
from pipeline.cli.docs import describe_default
from pipeline.plugin import load


def test_version_by_module():
    result = run_pipeline("--version")
    assert result.returncode == 0
    assert result.stdout.decode().strip() == f"pipeline {__version__}"


def test_version_by_console_script():
    exe = shutil.which("pipeline")
    if exe is None:
        pytest.skip("the package is not installed (pip install -e .)")
    result = subprocess.run([exe, "--version"], capture_output=True, timeout=30)
    assert result.stdout.decode().strip() == f"pipeline {__version__}"


def write(tmp_path, text: str):
    path = tmp_path / "conf.yaml"
    path.write_text(text)
    return path


GOOD = """\
sources:
  a:
    type: exec
    command: ["true"]
  b:
    type: stdin
filters:
  flat:
    type: flatten
    inputs: [a, b]
sinks:
  out:
    type: stdout
    inputs: [flat]
  copy:
    type: file
    inputs: [flat, a]
    path: /tmp/x.jsonl
"""


def test_check_prints_the_graph(tmp_path):
    result = run_pipeline("check", str(write(tmp_path, GOOD)))
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "a (exec) -> flat, copy" in out
    assert "flat (flatten) <- a, b -> out, copy" in out
    assert "copy (file) <- flat, a" in out


BAD = """\
sources:
  cmd:
    type: exce
  c2:
    type: exec
    comand: ls
    interval: 5 parsecs
    timeout: true
filters:
  f1:
    type: flatten
    inputs: [f2, nope]
    arrays: indx
  f2:
    type: flatten
    inputs: [f1]
  lonely:
    type: flatten
    inputs: []
sinks:
  out:
    type: stdout
    inputs: [cmd]
    chunk_max_events: many
    buffer: {max_bytes: 12 potatoes}
  o2:
    type: file
    inputs: [out]
    path: ${PIPELINE_TEST_UNSET_VAR}
"""

EXPECTED = [
    (3, "sources.cmd.type", "unknown source type 'exce' (did you mean 'exec'?)"),
    (5, "sources.c2.command", "missing required option"),
    (6, "sources.c2.comand", "unknown option (did you mean 'command'?)"),
    (7, "sources.c2.interval", "expected a duration"),
    (8, "sources.c2.timeout", "expected a duration"),
    (12, "filters.f1.inputs[1]", "'nope' is not a source or filter id"),
    (12, "filters.f1.inputs", "cycle: f1 -> f2 -> f1"),
    (13, "filters.f1.arrays", "expected one of index, keep, norikra, got the string 'indx' (did you mean 'index'?)"),
    (19, "filters.lonely.inputs", "a filter needs at least one input"),
    (24, "sinks.out.chunk_max_events", "expected an integer, got the string 'many'"),
    (25, "sinks.out.buffer.max_bytes", "expected a size like 64KiB or 256MiB"),
    (28, "sinks.o2.inputs[0]", "'out' is a sink, which has no output"),
    (29, "sinks.o2.path", "environment variable PIPELINE_TEST_UNSET_VAR is not set"),
]


@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_config_lists_every_problem(tmp_path, command):
    conf = write(tmp_path, BAD)
    result = run_pipeline(command, str(conf))
    assert result.returncode == 2
    assert result.stdout == b""
    err = result.stderr.decode()
    assert "Traceback" not in err
    lines = err.splitlines()
    for line, path, message in EXPECTED:
        prefix = f"{conf}:{line}: {path}: "
        assert any(ln.startswith(prefix) and message in ln for ln in lines), (prefix, message, err)
    assert lines[-1] == f"{conf}: {len(EXPECTED)} problems, nothing started"


@pytest.mark.parametrize("text, line, message", [
    ("sources:\n  a: [\n", 3, "YAML syntax error"),
    ("sources:\n  a:\n    type: exec\n   command: x\n", 4, "YAML syntax error"),
    ("sources:\n  a: {type: stdin}\n  a: {type: stdin}\nsinks:\n  o: {type: stdout, inputs: [a]}\n", 3,
     "duplicate key 'a'"),
    ("", 0, "the config is empty"),
    ("- just\n- a list\n", 1, "the config must be a map"),
    ("sources:\n  a: {type: stdin}\n", 1, "sinks: missing"),
])
def test_broken_files(tmp_path, text, line, message):
    conf = write(tmp_path, text)
    result = run_pipeline("check", str(conf))
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "Traceback" not in err
    where = f"{conf}:{line}: " if line else f"{conf}: "
    assert any(ln.startswith(where) and message in ln for ln in err.splitlines()), err


def test_missing_file(tmp_path):
    result = run_pipeline("check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert b"cannot read the config" in result.stderr


def test_plugins_lists_every_plugin():
    result = run_pipeline("plugins")
    assert result.returncode == 0
    out = result.stdout.decode()
    for kind, names in (("sources", ["exec", "stdin"]), ("filters", ["flatten"]), ("sinks", ["stdout", "file"])):
        assert f"{kind}:" in out
        for name in names:
            assert re.search(rf"^  {name}\s+\S", out, re.M), name


@pytest.mark.parametrize("kind, name", [("source", "exec"), ("filter", "flatten"), ("sink", "file")])
def test_plugin_help_comes_from_the_declaration(kind, name):
    result = run_pipeline("plugins", name)
    assert result.returncode == 0
    out = result.stdout.decode()
    cls = load(kind, name)
    assert out.startswith(f"{kind} {name}: {cls.summary()}")
    for opt in cls.all_options():
        if opt.name == "type":
            continue
        row = next(ln for ln in out.splitlines() if ln.split()[:1] == [opt.name])
        assert opt.type.name in row and describe_default(opt) in row and row.rstrip().endswith(opt.help)


def test_plugin_help_unknown():
    result = run_pipeline("plugins", "nope")
    assert result.returncode == 1
    assert b"no plugin named 'nope'" in result.stderr


def test_generated_reference_is_current():
    result = run_pipeline("plugins")  # keeps the import path the same as users'
    assert result.returncode == 0
    from pipeline.cli.docs import markdown

    assert (ROOT / "docs" / "plugins.md").read_text() == markdown() + "\n", \
        "docs/plugins.md is stale: python -m pipeline.cli.docs > docs/plugins.md"


ADDRESSES = """\
sources:
  u:
    type: uwsgi
    address: 127.0.0.1:9191
  d:
    type: docker
    endpoint: docker.sock
  h:
    type: http_json
    url: 127.0.0.1:8080/x
    path: 42
  p:
    type: prometheus
    url: localhost:9100
sinks:
  out:
    type: stdot
    inputs: [u, d, h, p, nope]
  o2:
    type: stdout
    inputs: [p, p]
"""

ADDRESS_PROBLEMS = [
    "4: sources.u.address: expected a URL like unix:///path.sock, /path.sock, tcp://host:port or "
    "http://host:port/path, got the string '127.0.0.1:9191' (did you mean 'tcp://127.0.0.1:9191'?)",
    "7: sources.d.endpoint: expected a URL like unix:///path.sock, /path.sock or tcp://host:port, "
    "got the string 'docker.sock' (did you mean 'tcp://docker.sock'?)",
    "10: sources.h.url: expected a URL like http://host:port/path, got the string '127.0.0.1:8080/x'"
    " (did you mean 'http://127.0.0.1:8080/x'?)",
    "11: sources.h.path: expected a string, got the number 42",
    "14: sources.p.url: expected a URL like http://host:port/path, got the string 'localhost:9100'"
    " (did you mean 'http://localhost:9100'?)",
    "17: sinks.out.type: unknown sink type 'stdot' (did you mean 'stdout'?); `pipeline plugins` lists them",
    "18: sinks.out.inputs[4]: 'nope' is not a source or filter id",
    "21: sinks.o2.inputs[1]: 'p' is listed twice: each of its events would be taken twice",
]


@pytest.mark.parametrize("command", ["check", "run"])
def test_addresses_numbers_and_inputs_in_one_pass(tmp_path, command):
    conf = write(tmp_path, ADDRESSES)
    result = run_pipeline(command, str(conf))
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [f"{conf}:{p}" for p in ADDRESS_PROBLEMS] + [
        f"{conf}: {len(ADDRESS_PROBLEMS)} problems, nothing started"]


UNREAD = """\
sources:
  a:
    type: exec
    command: [echo, '{"n": 1}']
  forgotten:
    type: stdin
sinks:
  out:
    type: stdout
    inputs: [a]
"""


def test_a_source_nothing_reads_is_a_warning_from_check_and_run(tmp_path):
    conf = write(tmp_path, UNREAD)
    warning = (f"{conf}:5: sources.forgotten: warning: nothing reads this source: "
               "no filter or sink lists 'forgotten' in its inputs")
    check = run_pipeline("check", str(conf))
    assert check.returncode == 0 and check.stderr.decode().splitlines() == [warning]
    run = run_pipeline("run", "--once", str(conf), input=b"")
    assert run.returncode == 0 and run.stdout == b'{"n":1}\n'
    assert run.stderr.decode().splitlines()[0].endswith(" warning config: " + warning.replace("warning: ", ""))


def test_plugin_help_writes_sizes_and_durations_as_a_config_would():
    rows = {ln.split()[0]: ln.split()[2] for ln in run_pipeline("plugins", "rate").stdout.decode().splitlines()
            if ln.split()[:1] in (["per"], ["state_ttl"])}
    assert rows == {"per": "1s", "state_ttl": "1d"}
    out = run_pipeline("plugins", "uwsgi").stdout.decode()
    assert re.search(r"^max_bytes\s+size\s+16MiB\s", out, re.M)
    assert re.search(r"^interval\s+duration\s+10s\s", out, re.M)


def test_plugin_list_gives_whole_summaries():
    out = run_pipeline("plugins").stdout.decode()
    summaries = [ln.split(None, 1)[1] for ln in out.splitlines() if ln.startswith("  ")]
    assert len(summaries) > 15 and all(s.endswith(".") for s in summaries), summaries
    assert "PackedForward and CompressedPackedForward, integer or EventTime times" in out


def test_the_daemon_says_what_it_runs_at_start_and_a_once_run_does_not(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("sources:\n  s: {type: stdin}\nfilters:\n  f: {type: select, inputs: s, fields: [a]}\n"
                    "sinks:\n  d: {type: discard, inputs: [f]}\n")
    daemon = run_pipeline("run", str(path), input=b'{"a": 1}\n')
    said = daemon.stderr.decode().splitlines()
    assert daemon.returncode == 0 and len(said) == 1, said
    assert f"info runtime: pipeline {__version__}: running {path}: 1 sources, 1 filters, 1 sinks " \
           "(s:stdin, f:select, d:discard)" in said[0]
    once = run_pipeline("run", "--once", str(path), input=b'{"a": 1}\n')
    assert once.returncode == 0 and once.stderr == b""
