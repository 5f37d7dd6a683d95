"""Real remote-write receivers started on 127.0.0.1 for the prometheus_remote_write tests:
Prometheus (Debian's 2.42, `--web.enable-remote-write-receiver`) and VictoriaMetrics
(Debian's `victoria-metrics`), each with a storage directory of its own; and the read back
through their query APIs as (labels, ms, value) samples."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, port_open, wait_for
from log_programs import start_nginx

Sample = tuple[tuple[tuple[str, str], ...], int, float]


def _exe(name: str, package: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: .ci/run installs .ci/apt-packages")
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return exe


def _get(url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None) -> bytes:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30, context=context) as answer:
        return answer.read()


class Receiver:
    """One server process; `write_url` is what the sink posts to."""

    name = ""
    write_path = ""

    def __init__(self, tmp: Path, port: int | None = None):
        self.tmp = tmp
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        #: what the test's own queries need (VictoriaMetrics' -tls and -httpAuth)
        self.headers: dict[str, str] = {}
        self.context: ssl.SSLContext | None = None
        self.write_url = self.base + self.write_path
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        with open(self.tmp / f"{self.name}.log", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, cwd=self.tmp)
        if not wait_for(lambda: port_open(self.port) and self.ready(), timeout=60):
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {(self.tmp / f'{self.name}.log').read_text()[-2000:]}")

    def ready(self) -> bool:
        return True

    def get(self, path: str) -> bytes:
        return _get(self.base + path, self.headers, self.context)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def samples(self, match: str) -> list[Sample]:
        """Every stored sample of the series matching `match` (a series selector)."""
        raise NotImplementedError


def _key(metric: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(metric.items()))


class Prometheus(Receiver):
    name = "prometheus"
    write_path = "/api/v1/write"
    #: --web.enable-remote-write-receiver: without it, writes are answered 404
    receiver = True

    def command(self) -> list[str]:
        (self.tmp / "prometheus.yml").write_text("global: {evaluation_interval: 1m}\n")
        return [_exe("prometheus", "prometheus"), f"--config.file={self.tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}",
                *(["--web.enable-remote-write-receiver"] if self.receiver else [])]

    def ready(self) -> bool:
        return self.get("/-/ready").startswith(b"Prometheus Server is Ready")

    def samples(self, match: str) -> list[Sample]:
        # a range selector in an instant query answers the raw samples, times in seconds
        # with ms digits and values as Go's shortest exact text
        query = urllib.parse.urlencode({"query": f"{match}[1y]", "time": f"{time.time() + 3600:.3f}"})
        doc = json.loads(self.get(f"/api/v1/query?{query}"))
        return sorted((_key(r["metric"]), round(float(t) * 1000), float(v))
                      for r in doc["data"]["result"] for t, v in r["values"])


class VictoriaMetrics(Receiver):
    name = "victoria-metrics"
    write_path = "/api/v1/write"

    def __init__(self, tmp: Path, *args: str, port: int | None = None, tls: bool = False):
        super().__init__(tmp, port)
        self.args = args
        if tls:  # with -tls, its own queries too
            self.base = self.base.replace("http:", "https:", 1)
            self.write_url = self.base + self.write_path

    def command(self) -> list[str]:
        # -retentionPeriod: recorded samples keep their time, however old the recording
        return [_exe("victoria-metrics", "victoria-metrics"), f"-storageDataPath={self.tmp / 'vm-data'}",
                f"-httpListenAddr=127.0.0.1:{self.port}", "-retentionPeriod=100y", *self.args]

    def ready(self) -> bool:
        try:
            return self.get("/health").strip() == b"OK"
        except urllib.error.URLError:
            return False

    def samples(self, match: str) -> list[Sample]:
        self.get("/internal/force_flush")  # what came in the last second is searchable too
        query = urllib.parse.urlencode({"match[]": match, "start": "0", "end": f"{time.time() + 86400:.0f}"})
        out = []
        for line in self.get(f"/api/v1/export?{query}").splitlines():
            doc = json.loads(line)
            key = _key(doc["metric"])
            out += [(key, t, float(v)) for t, v in zip(doc["timestamps"], doc["values"])]
        return sorted(out)


class VMAuth(Receiver):
    """vmauth in front of a receiver, taking only requests with `Authorization: Bearer TOKEN`."""

    name = "vmauth"
    write_path = "/api/v1/write"

    def __init__(self, tmp: Path, upstream: str, token: str):
        super().__init__(tmp)
        (tmp / "auth.yml").write_text(f'users:\n  - bearer_token: "{token}"\n    url_prefix: "{upstream}"\n')

    def command(self) -> list[str]:
        return [_exe("vmauth", "victoria-metrics"), f"-auth.config={self.tmp / 'auth.yml'}",
                f"-httpListenAddr=127.0.0.1:{self.port}"]


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by the openssl command."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    made = subprocess.run([_exe("openssl", "openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                           "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                           "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    return cert, key


class Gateway:
    """nginx in front of a receiver, as a maintenance window looks to its clients: while
    `maintenance` exists, every write is answered 503 with `Retry-After`; each answer's
    time and status go to `access.log`."""

    def __init__(self, tmp: Path, upstream: str, retry_after: int = 2):
        self.tmp = tmp
        self.port = free_port()
        self.write_url = f"http://127.0.0.1:{self.port}/api/v1/write"
        self.maintenance = tmp / "maintenance"
        self.access = tmp / "access.log"
        self.proc = start_nginx(tmp, f"  log_format timed '$msec $status';\n  access_log {self.access} timed;\n"
                                     f"  server {{\n    listen 127.0.0.1:{self.port};\n"
                                     f"    location /api/v1/write {{\n      if (-f {self.maintenance}) {{\n"
                                     f"        add_header Retry-After {retry_after} always;\n"
                                     f"        return 503 'down for maintenance';\n      }}\n"
                                     f"      proxy_pass {upstream};\n    }}\n  }}\n")
        if not wait_for(lambda: port_open(self.port)):
            self.stop()
            raise RuntimeError("nginx did not start")

    def answers(self) -> list[tuple[float, int]]:
        """(time, status) of each write nginx answered."""
        if not self.access.exists():
            return []
        return [(float(t), int(s)) for t, s in (line.split() for line in self.access.read_text().splitlines())]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
