"""Shared test helpers: run the real `pipeline` command, build plugins from options."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.options import Errors, resolve
from pipeline.engine.context import Context
from pipeline.plugin import Plugin, load

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def run_pipeline(*args: str, input: bytes | None = None, timeout: float = 60,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m pipeline ARGS` as a user would run it; stdout and stderr as bytes."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "pipeline", *args], input=input, capture_output=True,
                          timeout=timeout, env=full_env, cwd=cwd)


#: processes a test started: whatever is still running when the test ends (it failed, or
#: skipped half way) is killed then (conftest.py), not left to run beside the next tests
STARTED: list[subprocess.Popen] = []


def started(proc: subprocess.Popen) -> subprocess.Popen:
    STARTED.append(proc)
    return proc


def start_pipeline(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen:
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return started(subprocess.Popen([sys.executable, "-m", "pipeline", *args], env=full_env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw))


# VmHWM, not the rusage of the child: Linux carries the forking parent's peak (this test
# process) over exec into ru_maxrss, while VmHWM belongs to the memory of the new program
_MEASURED = """
import runpy, sys
report = sys.argv.pop(1)
try:
    runpy.run_module("pipeline", run_name="__main__", alter_sys=True)
finally:
    status = open("/proc/self/status").read()
    open(report, "w").write(status.split("VmHWM:")[1].split()[0])
"""


def run_measured(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, int]:
    """`python -m pipeline ARGS`, and the peak resident memory of that process in bytes."""
    with tempfile.NamedTemporaryFile("r") as report:
        result = subprocess.run([sys.executable, "-c", _MEASURED, report.name, *args], capture_output=True,
                                timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        return result, int(report.read()) * 1024


def make_plugin(kind: str, type: str, id: str = "test", state_dir: Path | None = None,
                errors: list | None = None, **options: Any) -> Plugin:
    """A plugin built from options exactly as a config would build it (validation included)."""
    cls = load(kind, type)
    problems = Errors()
    if kind != "source":
        options.setdefault("inputs", ["in"])
    conf = resolve(cls.all_options(), {"type": type, **options}, f"{kind}s.{id}", problems)
    assert not problems, problems.lines()
    on_error = errors.append if errors is not None else None
    return cls(Context(id, kind, state_dir=state_dir, on_error=on_error), conf)


def fill(disk: Path, leave: int) -> Path:
    """Take all of a disk's space but `leave` bytes, with one file (the `small_disk` fixture)."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 15.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except (OSError, ValueError):
            pass
        time.sleep(step)
    return False


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def accept_forever(sock: socket.socket, handle) -> None:
    """Serve a listening socket from a daemon thread: `handle(conn)` per connection, each in
    a thread of its own; ends when the socket is closed."""
    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()


def event_time(time_ns: int):
    """An EventTime as msgpack's packer writes it, for hand-made forward messages."""
    import msgpack

    from pipeline.codecs.forward_protocol import event_time_data

    return msgpack.ExtType(0, event_time_data(time_ns))


def promtool(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    """The real `promtool ARGS` (Debian's `prometheus` package, in .ci/apt-packages); the
    calling test is skipped, saying so, where it is not installed."""
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return subprocess.run([exe, *args], input=input, capture_output=True, timeout=30)


def gunzip(blob: bytes, max_bytes: int) -> bytes:
    """A compressed forward blob inflated at once (the source inflates it in steps)."""
    from pipeline.codecs.forward_protocol import inflate

    return b"".join(inflate(blob, max_bytes))
