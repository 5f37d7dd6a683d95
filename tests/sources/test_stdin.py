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
    """64-bit ones as numbers; past that as their digits (pipeline/codecs/edge.py: no msgpack holds them)."""
    data = b'{"big": 123456789012345678901234567890, "u64": 18446744073709551615, "neg": -9223372036854775808}\n'
    result = run_pipeline("run", "--once", conf(tmp_path, "json_lines"), input=data)
    assert json.loads(result.stdout) == {"big": "123456789012345678901234567890", "u64": 18446744073709551615,
                                         "neg": -9223372036854775808}


def test_eof_ends_a_daemon_run_too(tmp_path):
    proc = start_pipeline("run", conf(tmp_path, "json_lines"), stdin=-1)
    out, err = proc.communicate(b'{"a": 1}\n', timeout=20)
    assert proc.returncode == 0, err
    assert out == b'{"a":1}\n'


def limits_conf(tmp_path, source: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(f"sources:\n  in: {source}\n"
                    "sinks:\n  out: {type: stdout, inputs: [in]}\n"
                    f"  errors: {{type: file, inputs: [_errors], path: {tmp_path}/errors}}\n")
    return str(path)


@pytest.mark.parametrize("fmt, read_size", [("json_lines", "64KiB"), ("lines", "8MiB")])
def test_a_line_past_max_line_bytes_is_one_error_and_reading_goes_on(tmp_path, fmt, read_size):
    # 64KiB blocks: the long line spans many reads; 8MiB: it sits inside one read with the others
    long = b'{"big": "' + b"x" * (5 << 20) + b'"}'
    good = [b'{"a": %d}' % i for i in range(3)]
    data = good[0] + b"\n" + long + b"\n" + good[1] + b"\n" + long[:2 << 20] + b"\n" + good[2] + b"\n"
    (tmp_path / "input").write_bytes(data)
    path = limits_conf(tmp_path, f"{{type: stdin, format: {fmt}, read_size: {read_size}}}")
    with open(tmp_path / "input", "rb") as stdin:  # a file: each read gets read_size bytes
        proc = start_pipeline("run", "--once", path, stdin=stdin)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    out = [json.loads(line) for line in stdout.splitlines()]
    assert out == ([{"a": i} for i in range(3)] if fmt == "json_lines"
                   else [{"message": g.decode()} for g in good])
    errors = [json.loads(line) for line in (tmp_path / "errors").read_text().splitlines()]
    assert [e["error"] for e in errors] == ["line longer than max_line_bytes (1048576 bytes), skipped"] * 2
    assert errors[0]["sample"].startswith('{"big": "xxx') and len(errors[0]["sample"]) < 300
    logged = [line for line in stderr.decode().splitlines() if "max_line_bytes" in line]
    assert len(logged) == 1 and len(logged[0]) < 500  # the sample in the log is cut too


def test_a_document_past_max_bytes_is_not_parsed(tmp_path):
    path = limits_conf(tmp_path, "{type: stdin, format: json, max_bytes: 1KiB, read_size: 100}")
    result = run_pipeline("run", "--once", path, input=b'{"a": "' + b"x" * 5000 + b'"}')
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    errors = [json.loads(line) for line in (tmp_path / "errors").read_text().splitlines()]
    assert [e["error"] for e in errors] == ["document larger than max_bytes (1024 bytes), not parsed"]
