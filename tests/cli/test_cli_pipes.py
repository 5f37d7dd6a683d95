"""The CLI in shell pipelines: a reader that leaves early (status 141 for a run), and stdin
still open at SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT, start_pipeline, wait_for


def test_reader_that_leaves_early_gets_no_traceback():
    result = subprocess.run(f"{sys.executable} -m pipeline plugins rate | head -1", shell=True, cwd=ROOT,
                            capture_output=True, timeout=30)
    assert result.stdout.startswith(b"filter rate:") and b"Traceback" not in result.stderr


def test_sigterm_with_stdin_still_open_exits_cleanly(tmp_path):
    conf = tmp_path / "c.yaml"
    out = tmp_path / "out.jsonl"
    conf.write_text(f"sources:\n  in: {{type: stdin}}\nsinks:\n  o: {{type: file, inputs: [in], path: {out}}}\n")
    for _ in range(5):  # the abort this guards against came only now and then
        proc = start_pipeline("run", str(conf), stdin=subprocess.PIPE)
        proc.stdin.write(b'{"a": 1}\n')
        proc.stdin.flush()
        assert wait_for(lambda: out.exists() and out.read_bytes().count(b"\n") >= 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, proc.stderr.read().decode()
        proc.stdin.close()
        assert b"Fatal Python error" not in proc.stderr.read()
        out.unlink()


NUMBERS = """
sources:
  count:
    type: exec
    interval: {interval}
    shell: true
    format: json_lines
    command: "seq {n} | sed 's/.*/{{\\"n\\": &}}/'"
sinks:
  out: {{type: stdout, inputs: [count]}}
"""


@pytest.mark.parametrize("once, interval, n, lines", [(True, "0s", 200_000, 1), (False, "0.2s", 1, 2)])
def test_stdout_reader_gone_stops_the_pipeline_with_status_141(tmp_path, once, interval, n, lines):
    """`pipeline run --once big.yaml | head -1` and `pipeline run demo.yaml | head -2`: the
    reader leaving ends the run at once, as it ends `cat`, with no retry and no traceback."""
    conf = tmp_path / "c.yaml"
    conf.write_text(NUMBERS.format(interval=interval, n=n))
    proc = start_pipeline("run", *(["--once"] if once else []), "--log-level", "debug", str(conf))
    for _ in range(lines):
        assert proc.stdout.readline().startswith(b'{"n":')
    started = time.monotonic()
    proc.stdout.close()
    status = proc.wait(timeout=20)
    err = proc.stderr.read().decode()
    assert status == 141, err
    assert time.monotonic() - started < 3
    assert "Traceback" not in err and "retry" not in err and " error " not in err, err
    assert err.count("reader closed") == 1, err
