"""A `pipeline run` with its api on, for the api, tap and top tests."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helpers import free_port, port_open, start_pipeline, wait_for


@contextmanager
def serving(port: int, *args: str, env: dict[str, str] | None = None, **kw: Any):
    """`pipeline ARGS`, once it listens on `port`; yields the process, stopped at the end."""
    proc = start_pipeline(*args, env=env, **kw)
    try:
        assert wait_for(lambda: port_open(port) or proc.poll() is not None), "the api did not start"
        assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running(tmp_path: Path, config: str, *args: str):
    """Run `config` (its `api: {address: ...}` filled with a free port, as `{api}`); yields
    (process, port). The process is stopped, and its stderr kept, at the end."""
    port = free_port()
    path = tmp_path / "pipeline.yaml"
    path.write_text(config.replace("{api}", f"127.0.0.1:{port}"))
    with serving(port, "run", str(path), *args) as proc:
        yield proc, port


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_json(port: int, path: str) -> tuple[int, Any]:
    status, body = get(port, path)
    return status, json.loads(body)


def listening_address(port: int) -> str:
    """The local address a TCP socket listens on at `port`, as /proc/net/tcp writes it
    (0100007F is 127.0.0.1, 00000000 every address)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, hex_port = fields[1].split(":")
        if int(hex_port, 16) == port and fields[3] == "0A":
            return address
    raise AssertionError(f"nothing listens on port {port}")
