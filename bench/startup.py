"""Start-up cost of one `pipeline run --once conf/uwsgi-in_exec.yaml`, as td-agent's in_exec
pays it every few seconds: median wall time and peak RSS of 20 runs, beside `python -c pass`.

    python bench/startup.py [--runs N]

A unix socket in this process answers like uWSGI's stats server with a recorded document,
so no uWSGI is needed.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "uwsgi" / "stats-010.json"


def serve(path: str, payload: bytes) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(16)

    def loop() -> None:
        while True:
            conn, _ = server.accept()
            with conn:
                conn.sendall(payload)

    threading.Thread(target=loop, daemon=True).start()


def measure(argv: list[str], runs: int, env: dict[str, str]) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - started)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return statistics.median(times), rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "stats.sock")
        serve(sock, FIXTURE.read_bytes())
        env = dict(os.environ, UWSGI_STATS=f"unix://{sock}", PIPELINE_STATE_DIR=tmp, PYTHONPATH=str(ROOT))
        base, base_rss = measure([sys.executable, "-c", "pass"], args.runs, env)
        run, run_rss = measure([sys.executable, "-m", "pipeline", "run", "--once",
                                str(ROOT / "conf" / "uwsgi-in_exec.yaml")], args.runs, env)
    print(f"median of {args.runs} runs")
    print(f"  python -c pass                                  {base * 1000:6.1f} ms  peak RSS {base_rss:.0f} MiB")
    print(f"  pipeline run --once conf/uwsgi-in_exec.yaml     {run * 1000:6.1f} ms  peak RSS {run_rss:.0f} MiB")


if __name__ == "__main__":
    main()
