"""Source stdin through the real CLI: formats, bad input, end of input."""

from __future__ import annotations

import json

import msgpack
import pytest
from helpers import run_pipeline, start_pipeline


def conf(tmp_path, fmt, sink_format="json"):
    path = tmp_path / "c.yaml"
    path.write_text(f"sources:\n  in: {{type: stdin, format: {fmt}}}\n"
                    f"sinks:\n  out: {{type: stdout, inputs: [in], format: {sink_format}}}\n")
    return str(path)


@pytest.mark.parametrize("fmt, data, expected", [
    ("json_lines", b'{"a": 1}\n{"b": 2}', [{"a": 1}, {"b": 2}]),
    ("json", b'{"a": {"b": [1, 2]}}\n', [{"a": {"b": [1, 2]}}]),
    ("lines", b"hello\nworld\n", [{"message": "hello"}, {"message": "world"}]),
    ("msgpack", msgpack.packb({"a": 1}) + msgpack.packb({"b": "x"}), [{"a": 1}, {"b": "x"}]),
])
def test_formats(tmp_path, fmt, data, expected):
    result = run_pipeline("run", "--once", conf(tmp_path, fmt), input=data)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == expected


def test_bad_lines_and_invalid_utf8_do_not_stop_the_rest(tmp_path):
    data = b'{"a": 1}\n{"broken": \n\xff\xfe garbage\n{"s": "caf\xc3\xa9"}\n{"a": 2}\n'
    result = run_pipeline("run", "--once", conf(tmp_path, "json_lines"), input=data)
    assert result.returncode == 0
    assert [json.loads(line) for line in result.stdout.splitlines()] == [{"a": 1}, {"s": "café"}, {"a": 2}]
    err = result.stderr.decode()
    assert "source.in: not a JSON object" in err and "from stdin" in err and "Traceback" not in err


def test_big_integers_survive_exactly(tmp_path):
    data = b'{"big": 123456789012345678901234567890, "u64": 18446744073709551615, "neg": -9223372036854775808}\n'
    result = run_pipeline("run", "--once", conf(tmp_path, "json_lines"), input=data)
    assert json.loads(result.stdout) == {"big": 123456789012345678901234567890, "u64": 18446744073709551615,
                                         "neg": -9223372036854775808}


def test_eof_ends_a_daemon_run_too(tmp_path):
    proc = start_pipeline("run", conf(tmp_path, "json_lines"), stdin=-1)
    out, err = proc.communicate(b'{"a": 1}\n', timeout=20)
    assert proc.returncode == 0, err
    assert out == b'{"a":1}\n'
