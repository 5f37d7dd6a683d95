"""What the api costs: bench_core's graph (the Docker stats replay through
`stdin -> flatten -> file`) with the api off, against the api on with a `pipeline top`
(in a pseudo-terminal) and a `pipeline tap` of the filter attached, in the same run.

    python bench/bench_api.py [--repeat N] [--rounds N]

Each side is a real `pipeline run --once`; its time runs from the first byte written to
its stdin to its exit, so both sides pay the same start-up outside the measure, and the
clients are attached before the first byte. The issue's target: the api side loses <= 5%.
"""

from __future__ import annotations

import argparse
import os
import pty
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import FIXTURES, best_of, replay_lines  # noqa: E402
from tests.helpers import ROOT, free_port, port_open, wait_for  # noqa: E402

CONFIG = """
sources: {in: {type: stdin}}
filters: {flat: {type: flatten, inputs: [in]}}
sinks: {file: {type: file, inputs: [flat], path: "OUT"}}
"""
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass


def _top(port: int) -> tuple[subprocess.Popen, int]:
    """`pipeline top` on a pseudo-terminal of 80x24, its screen read and thrown away."""
    master, slave = pty.openpty()
    env = dict(ENV, TERM="xterm", LINES="24", COLUMNS="80")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "top", "--api", f"127.0.0.1:{port}"],
                            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    threading.Thread(target=_drain, args=(master,), daemon=True).start()
    return proc, master


def run(config: Path, data: bytes, api: bool) -> float:
    args = [sys.executable, "-m", "pipeline", "run", "--once", str(config)]
    port = free_port()
    if api:
        args += ["--api", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=ENV)
    clients: list[subprocess.Popen] = []
    master = None
    if api:
        assert wait_for(lambda: port_open(port)), "the api did not start"
        top, master = _top(port)
        tap = subprocess.Popen([sys.executable, "-m", "pipeline", "tap", "--api", f"127.0.0.1:{port}", "flat"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
        clients = [top, tap]
        time.sleep(2.5)  # top has drawn twice, the tap is attached
    else:
        time.sleep(0.5)  # the same start-up, outside the measure
    started = time.perf_counter()
    assert proc.stdin is not None
    proc.stdin.write(data)
    proc.stdin.close()
    status = proc.wait()
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"pipeline failed ({status}): {proc.stderr.read().decode()}")  # type: ignore[union-attr]
    for c in clients:
        c.terminate()
        c.wait(10)
    if master is not None:
        os.close(master)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3, help="replay the 10,000 lines this many times")
    ap.add_argument("--rounds", type=int, default=3, help="measure each side this many times, keep the best")
    args = ap.parse_args()
    lines = replay_lines(FIXTURES / "docker" / "stats-replay.jsonl.gz", args.repeat)
    data = b"\n".join(lines) + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(CONFIG.replace("OUT", str(Path(tmp) / "out.jsonl")))
        off, on = best_of(args.rounds, lambda: run(config, data, False), lambda: run(config, data, True))
    n = len(lines)
    print(f"stdin -> flatten -> file (docker stats replay), api off vs on with top and tap: {n} records")
    print(f"  api off    {n / off:>12,.0f} records/s  ({off:.3f} s)")
    print(f"  api on     {n / on:>12,.0f} records/s  ({on:.3f} s)")
    print(f"  cost       {(on - off) / off:+.1%} (target: <= 5%)")


if __name__ == "__main__":
    main()
