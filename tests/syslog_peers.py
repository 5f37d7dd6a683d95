"""rsyslogd started for real by a test, as an instance of its own (config, pid file and work
directory in the test's directory, 127.0.0.1 ports), with util-linux `logger` feeding it; and
a pipeline with a syslog source writing what it receives to a JSON-lines file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from helpers import ROOT, free_port, port_open, wait_for
from log_programs import need

#: rsyslog's openssl stream driver (Debian's rsyslog-openssl), for the TLS tests
OSSL_DRIVER = "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so"


class Rsyslog:
    """`rsyslogd -n -f CONF -i PIDFILE` with `body` (its inputs and actions) after a global()
    that keeps its work files here; `port` is a free port for `body` to listen on."""

    def __init__(self, tmp: Path, body: str, name: str = "rsyslog", tls_certs: Path | None = None):
        self.exe = need("rsyslogd")
        self.dir = tmp / name
        self.dir.mkdir(exist_ok=True)
        tls = ""
        if tls_certs is not None:
            if not os.path.exists(OSSL_DRIVER):
                import pytest
                if os.environ.get("CI"):
                    pytest.fail("rsyslog's TLS driver is not installed: .ci/run installs .ci/apt-packages")
                pytest.skip("rsyslog's TLS driver is not installed (apt-get install rsyslog-openssl)")
            tls = (f' defaultNetstreamDriver="ossl" defaultNetstreamDriverCAFile="{tls_certs}/cert.pem"'
                   f' defaultNetstreamDriverCertFile="{tls_certs}/cert.pem"'
                   f' defaultNetstreamDriverKeyFile="{tls_certs}/key.pem"')
        self.conf = self.dir / "rsyslog.conf"
        self.conf.write_text(f'global(workDirectory="{self.dir}"{tls})\n{body}')
        self.proc: subprocess.Popen | None = None

    def start(self, wait_port: int | None = None) -> Rsyslog:
        self.proc = subprocess.Popen([self.exe, "-n", "-f", str(self.conf), "-i", str(self.dir / "rsyslogd.pid")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "stderr.log", "ab"))
        if wait_port is not None:
            assert wait_for(lambda: port_open(wait_port) or self.proc.poll() is not None), "rsyslogd did not listen"
            assert self.proc.poll() is None, (self.dir / "stderr.log").read_text()
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def logger(*args: str, input: bytes | None = None) -> None:
    """util-linux logger; with `input`, one message per line of it."""
    subprocess.run([need("logger"), *args], input=input, check=True, timeout=30)


def numbered(n: int, start: int = 0, prefix: str = "n") -> bytes:
    return "".join(f"{prefix}={i} café\n" for i in range(start, start + n)).encode()


def numbers(texts, prefix: str = "n") -> list[int]:
    """The message numbers (`n=12`) found in `texts`, sorted (duplicates kept)."""
    pattern = re.compile(rf"(?:^|[\s:]){prefix}=(\d+)")
    return sorted(int(m) for text in texts for m in pattern.findall(text))


class SyslogReceiver:
    """`pipeline run` with one syslog source (`source`: its options) writing every event to
    a JSON-lines file."""

    def __init__(self, tmp: Path, source: str, name: str = "recv", port: int | None = None):
        self.api_port = free_port()
        self.dir = tmp / name
        self.dir.mkdir(exist_ok=True)
        self.port = port or free_port()
        self.out = self.dir / "out.jsonl"
        self.errors = self.dir / "errors.jsonl"
        self.starts = 0
        self.conf = self.dir / "conf.yaml"
        self.conf.write_text(
            f"api: {{address: 127.0.0.1:{self.api_port}}}\n"
            f"sources:\n  in: {{type: syslog, port: {self.port}, {source}}}\n"
            f"sinks:\n  out: {{type: file, inputs: [in], path: {self.out}}}\n"
            f"  errors: {{type: file, inputs: [_errors], path: {self.errors}}}\n")
        self.log = self.dir / "stderr.log"
        self.start()

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(self.conf)],
                                         env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                                         stderr=log)
        assert wait_for(lambda: self.stderr().count("listening on") > self.starts or self.proc.poll() is not None)
        assert self.proc.poll() is None, self.stderr()
        self.starts += 1

    def stderr(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def records(self) -> list[dict]:
        return _jsonl(self.out)

    def source_counters(self) -> dict:
        """The source's counters, from the api of the running pipeline."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/api/components", timeout=5) as r:
            found = [c for c in json.load(r)["components"] if c["id"] == "in"]
        return found[0]["counters"]

    def error_records(self) -> list[dict]:
        return _jsonl(self.errors)

    def messages(self) -> list[str]:
        return [r.get("message") or "" for r in self.records()]

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(20)
        return self.stderr()


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_lines(path: Path, predicate, timeout: float = 20) -> list[str]:
    """The lines of `path` once `predicate(lines)` holds (asserted)."""
    def lines() -> list[str]:
        return path.read_text(errors="replace").splitlines() if path.exists() else []
    assert wait_for(lambda: predicate(lines()), timeout), f"{path}: {lines()[-5:]}"
    return lines()


def settle(seconds: float = 0.3) -> None:
    """UDP and rsyslog's queues say nothing when they are done: a short wait after the count."""
    time.sleep(seconds)
