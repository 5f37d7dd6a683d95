"""A real uWSGI (Debian's uwsgi-core + python3 plugin) serving a small app, its stats server
where the test says, and load to make its counters move."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port

APP = """
import time
def application(env, start_response):
    if env["PATH_INFO"] == "/error":
        raise RuntimeError("boom")
    if env["PATH_INFO"] == "/slow":
        time.sleep(0.2)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


class Uwsgi:
    def __init__(self, tmp: Path, stats: str, extra: tuple[str, ...] = ()):
        exe = shutil.which("uwsgi")
        if exe is None:
            if os.environ.get("CI"):
                pytest.fail("uwsgi is not installed: .ci/run installs .ci/apt-packages")
            pytest.skip("uwsgi is not installed (apt-get install uwsgi-core uwsgi-plugin-python3)")
        (tmp / "app.py").write_text(APP)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, "--plugin", "python3", "--master", "--processes", "2", "--threads", "2",
             "--http-socket", f"127.0.0.1:{self.port}", "--wsgi-file", str(tmp / "app.py"),
             "--stats", stats, "--memory-report", "--die-on-term", "--disable-logging", *extra],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=open(tmp / "uwsgi.log", "wb"))
        self.wait_ready()

    def wait_ready(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.get("/")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("uWSGI did not start")

    def get(self, path: str) -> None:
        urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5).read()

    def load(self, n: int, path: str = "/") -> None:
        def hit():
            try:
                self.get(path)
            except OSError:  # /error: uWSGI answers 500 or closes the connection
                pass
        threads = [threading.Thread(target=hit) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
