"""Real processes around the tail tests: an application appending numbered lines at a steady
rate, Debian's logrotate, a tail pipeline to kill and restart, and the count of what came out."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_pipeline, start_pipeline, started, wait_for

# an application's log writer: O_APPEND writes of whole lines, the file reopened by path on
# SIGHUP (logrotate's postrotate), the number of lines written printed at SIGTERM
_WRITER = r"""
import os, signal, sys, time
path, rate = sys.argv[1], float(sys.argv[2])
reopen = False
def hup(*_):
    global reopen
    reopen = True
def term(*_):
    print(n, flush=True)
    os._exit(0)
signal.signal(signal.SIGHUP, hup)
signal.signal(signal.SIGTERM, term)
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
n = 0
pad = "x" * 60
while True:
    if reopen:
        reopen = False
        os.close(fd)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, b"%08d %s\n" % (n, pad.encode()))
    n += 1
    time.sleep(1 / rate)
"""


class Writer:
    def __init__(self, path: Path, rate: float = 400):
        self.path = path
        self.proc = started(subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(rate)],
                                             stdout=subprocess.PIPE, text=True))
        assert wait_for(lambda: path.exists() and path.stat().st_size > 0), "writer did not start"

    def hup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> int:
        """Stop writing; the number of lines written (0 .. n-1)."""
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        return int(out)


def logrotate(tmp: Path, log: Path, how: str, postrotate: str = "") -> None:
    """Run the real logrotate, forced, on `log` with `how` (create or copytruncate)."""
    exe = shutil.which("logrotate") or ("/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None)
    if exe is None:
        pytest.skip("logrotate is not installed (apt-get install logrotate)")
    conf = tmp / "logrotate.conf"
    script = f"    postrotate\n        {postrotate}\n    endscript\n" if postrotate else ""
    conf.write_text(f"{log} {{\n    {how}\n    rotate 10\n    missingok\n    nocompress\n{script}}}\n")
    done = subprocess.run([exe, "-s", str(tmp / "logrotate.state"), "-f", str(conf)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr


class Tail:
    """`pipeline run` of a tail source into a JSON-lines file, killed and restarted at will."""

    def __init__(self, tmp: Path, source: str, sink: str = "", name: str = "tail"):
        self.dir = tmp / name
        self.dir.mkdir(exist_ok=True)
        self.out = self.dir / "out.jsonl"
        self.conf = self.dir / "conf.yaml"
        self.conf.write_text(
            f"state_dir: {self.dir / 'state'}\n"
            f"sources:\n  t: {{type: tail, refresh_interval: 0.3s, rotate_wait: 1s, {source}}}\n"
            f"sinks:\n  out: {{type: file, inputs: [t], path: {self.out}{', ' + sink if sink else ''}}}\n")
        self.proc: subprocess.Popen | None = None
        self.kills = 0

    def start(self) -> Tail:
        """Start, and wait until its files are found (it writes its positions then): a test
        that rotated a file before that would test the start-up, not the rotation."""
        positions = self.dir / "state" / "t.positions"
        before = positions.stat().st_ino if positions.exists() else None
        self.proc = start_pipeline("run", str(self.conf))
        assert wait_for(lambda: positions.stat().st_ino != before or self.proc.poll() is not None, timeout=30), \
            "the pipeline did not start"
        assert self.proc.poll() is None, self.stderr()
        return self

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.stderr()
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.kills += 1

    def stop(self) -> str:
        assert self.proc is not None
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=30)
        return err.decode()

    def stderr(self) -> str:
        if self.proc is None or self.proc.poll() is None:
            return ""
        return self.proc.stderr.read().decode()  # type: ignore[union-attr]

    def messages(self) -> list[str]:
        if not self.out.exists():
            return []
        return [json.loads(line)["message"] for line in self.out.read_text().split("\n") if line.endswith("}")]

    def numbers(self) -> list[int]:
        return [int(m.split()[0]) for m in self.messages()]

    def wait_for_all(self, n: int, timeout: float = 30) -> None:
        """Until every number below `n` came out; then no line was lost."""
        ok = wait_for(lambda: set(range(n)) <= set(self.numbers()), timeout=timeout, step=0.2)
        missing = sorted(set(range(n)) - set(self.numbers()))
        assert ok, f"{len(missing)} lines lost, e.g. {missing[:10]}; stderr: {self.stderr()}"

    def duplicates(self) -> int:
        got = self.numbers()
        return len(got) - len(set(got))

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def pause(low: float = 0.3, high: float = 1.5) -> None:
    """A random moment: where a kill or a rotation falls in the stream is not chosen."""
    time.sleep(random.uniform(low, high))


def once(tmp_path: Path, source: str, *, errors: bool = False, extra: str = "",
         sink: str = "") -> tuple[list[dict], str]:
    """A `--once` run of a tail source; its records (tag as `tag`, `sink` more options of the
    file sink) and its stderr."""
    out = tmp_path / "out.jsonl"
    out.unlink(missing_ok=True)
    conf = tmp_path / "once.yaml"
    errors_sink = f"  errors: {{type: file, inputs: [_errors], path: {tmp_path / 'errors.jsonl'}}}\n" if errors else ""
    conf.write_text(f"state_dir: {tmp_path / 'state'}\n{extra}sources:\n  t: {{type: tail, {source}}}\n"
                    f"sinks:\n  out: {{type: file, inputs: [t], path: {out}, tag_key: tag{sink}}}\n{errors_sink}")
    done = run_pipeline("run", "--once", str(conf), timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    rows = [json.loads(line) for line in out.read_text().split("\n") if line] if out.exists() else []
    return rows, done.stderr.decode()
