"""The CLI in shell pipelines: a reader that leaves early, and stdin still open at SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys

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
