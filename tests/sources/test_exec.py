"""Source exec: formats, shell, env, timeouts that kill the whole group, failures."""

from __future__ import annotations

import asyncio
import os
import time

import msgpack
import pytest
from helpers import make_plugin, run_pipeline


def poll(errors=None, **options):
    source = make_plugin("source", "exec", errors=errors, **options)
    return source, asyncio.run(source.poll())


def records(batch):
    return [r for _, _, r in batch]


@pytest.mark.parametrize("fmt, output, expected", [
    ("json", '{"a": {"b": 1}}', [{"a": {"b": 1}}]),
    ("json", '[{"a": 1}, {"a": 2}]', [{"a": 1}, {"a": 2}]),
    ("json_lines", '{"a": 1}\n{"a": 2}\n', [{"a": 1}, {"a": 2}]),
    ("lines", "one\ntwo", [{"message": "one"}, {"message": "two"}]),
])
def test_formats(fmt, output, expected):
    source, batch = poll(command=["printf", "%s", output], format=fmt)
    assert records(batch) == expected
    assert all(tag == "test" and isinstance(t, int) and t > 1.6e18 for tag, t, _ in batch)


def test_msgpack_stream(tmp_path):
    data = tmp_path / "d.msgpack"
    data.write_bytes(msgpack.packb({"a": 1}) + msgpack.packb({"b": [1, 2]}))
    _, batch = poll(command=["cat", str(data)], format="msgpack")
    assert records(batch) == [{"a": 1}, {"b": [1, 2]}]


def test_shell_env_and_tag():
    source, batch = poll(command='echo "{\\"who\\": \\"$WHO\\"}" | cat', shell=True, env={"WHO": "me"}, tag="x.y")
    assert batch[0][0] == "x.y" and records(batch) == [{"who": "me"}]


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "grandchild"
    # the command starts a grandchild that would outlive it, then hangs
    source, batch = poll(command=f"sleep 100 & echo $! > {pidfile}; sleep 100", shell=True, timeout=0.5)
    assert batch == []
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid), "the grandchild survived the timeout"
    assert source.ctx.failing and "killed after timeout 0.5s" in source.ctx.last_failure


def test_children_left_behind_are_killed_after_exit(tmp_path):
    pidfile = tmp_path / "grandchild"
    poll(command=f"sleep 100 > /dev/null 2>&1 & echo $! > {pidfile}; echo '{{}}'", shell=True)
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie is dead, only waiting for its parent
    except FileNotFoundError:
        return False


def test_nonzero_exit_logs_the_stderr_tail_on_one_line(caplog):
    source, batch = poll(command="echo '{\"partial\": 1}'; echo 'it broke:' >&2; echo 'disk full' >&2; exit 3",
                         shell=True)
    assert records(batch) == [{"partial": 1}]
    # named by what the user wrote, not by the /bin/sh that ran it
    command = "echo '{\"partial\": 1}'; echo 'it broke:' >&2; echo 'disk full' >&2; exit 3"
    assert [r.getMessage() for r in caplog.records] == [f"{command!r} exited with status 3: 'it broke:\\ndisk full'"]
    assert source.ctx.failing


def test_output_past_max_bytes_kills_the_command_and_parses_nothing():
    started = time.monotonic()
    # endless output: reading must stop at max_bytes, not wait for the end or the timeout
    source, batch = poll(command=["yes", '{"a": 1}'], format="json_lines", max_bytes="1MiB", timeout=30)
    assert batch == [] and time.monotonic() - started < 10
    assert source.ctx.last_failure == "'yes' printed more than max_bytes (1048576 bytes): killed, its output not parsed"
    _, batch = poll(command=["printf", '{"a": 1}\n'], format="json_lines", max_bytes=9)
    assert records(batch) == [{"a": 1}]  # exactly max_bytes is fine


def test_missing_command_one_error_per_attempt(caplog):
    source = make_plugin("source", "exec", command=["no-such-command-pipeline"])
    for _ in range(3):
        assert asyncio.run(source.poll()) == []
    lines = [r for r in caplog.records if "cannot run 'no-such-command-pipeline'" in r.getMessage()]
    assert len(lines) == 3 and not any(r.exc_info for r in caplog.records)


def test_bad_lines_are_reported_and_skipped(caplog):
    errors: list = []
    source, batch = poll(errors=errors, command=["printf", '{"a": 1}\nnot json at all\n\xff\xfe\n{"a": 2}\n'],
                         format="json_lines")
    assert records(batch) == [{"a": 1}, {"a": 2}]
    assert source.ctx.counters["bad_input"] == 2
    assert len(errors) == 2 and errors[0][2]["sample"] == "not json at all"
    # logged once (rate limited), naming the source and the command
    logged = [r.getMessage() for r in caplog.records if "not a JSON object" in r.getMessage()]
    assert len(logged) == 1 and "from the output of 'printf'" in logged[0] and "not json at all" in logged[0]


def test_run_once_through_the_cli_with_json_from_a_script(tmp_path):
    script = tmp_path / "stats.py"
    script.write_text("import json; print(json.dumps({'workers': [{'id': 1}, {'id': 2}]}))")
    conf = tmp_path / "c.yaml"
    conf.write_text(f"sources:\n  s: {{type: exec, command: [python3, {script}]}}\n"
                    "filters:\n  f: {type: flatten, inputs: [s]}\n"
                    "sinks:\n  o: {type: stdout, inputs: [f]}\n")
    result = run_pipeline("run", "--once", str(conf), env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    assert result.stdout == b'{"workers.0.id":1,"workers.1.id":2}\n'

