"""nginx, Apache httpd and rsyslogd started for real in a test's directory (127.0.0.1, high
ports), sent requests and messages, and what each wrote to its log files read back."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, port_open, wait_for

# the request a log must keep whole: quotes, a percent-escaped quote, raw UTF-8 bytes in the path
RAW_REQUEST = b'GET /caf\xc3\xa9/"q" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'


def need(program: str) -> str:
    exe = shutil.which(program) or next((p for p in (f"/usr/sbin/{program}",) if os.path.exists(p)), None)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(f"{program} is not installed: .ci/run installs .ci/apt-packages")
        pytest.skip(f"{program} is not installed (see .ci/apt-packages)")
    return exe


def _requests(port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    for path, headers in (("/", {}),
                          ("/missing?q=%22x%22", {"User-Agent": 'Mozilla/5.0 "quoted"',
                                                  "Referer": 'http://ref/x?a="b"'})):
        try:
            urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=5).read()
        except urllib.error.HTTPError:
            pass
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(RAW_REQUEST)
        while s.recv(65536):
            pass


def _lines(path: Path, count: int) -> list[bytes]:
    assert wait_for(lambda: path.exists() and path.read_bytes().count(b"\n") >= count), path
    return path.read_bytes().splitlines()


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_nginx(tmp: Path, http: str) -> subprocess.Popen:
    """nginx in the foreground with its pid, error log and temp files in `tmp`; `http` is what
    goes inside `http { }`."""
    temp = "".join(f"  {k}_temp_path {tmp}/tmp;\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log info;\n"
        + ("user root;\n" if os.geteuid() == 0 else "")
        + "events { worker_connections 64; }\n"
        f"http {{\n{temp}{http}}}\n")
    return subprocess.Popen([need("nginx"), "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_nginx(tmp: Path) -> tuple[list[bytes], list[bytes]]:
    """access.log and error.log after three requests."""
    need("nginx")
    port = free_port()
    (tmp / "www").mkdir()
    (tmp / "www" / "index.html").write_text("hi\n")
    proc = start_nginx(tmp, f"  access_log {tmp}/access.log combined;\n"
                            f"  server {{ listen 127.0.0.1:{port}; root {tmp}/www; }}\n")
    try:
        assert wait_for(lambda: port_open(port)), "nginx did not start"
        _requests(port)
        return _lines(tmp / "access.log", 3), _lines(tmp / "error.log", 2)
    finally:
        _stop(proc)


def run_apache(tmp: Path) -> tuple[list[bytes], list[bytes]]:
    """access.log and error.log (LogLevel info) after three requests."""
    exe = need("apache2")
    port = free_port()
    www = tmp / "www"
    www.mkdir()
    (www / "index.html").write_text("hi\n")
    # Apache refuses to serve as root: its children run as www-data and must reach the files
    for p in (tmp, *tmp.parents):
        if p.stat().st_uid == os.geteuid():
            p.chmod(p.stat().st_mode | 0o011)
    modules = "/usr/lib/apache2/modules"
    user = "User www-data\nGroup www-data\n" if os.geteuid() == 0 else ""
    (tmp / "httpd.conf").write_text(
        f"ServerRoot {tmp}\nServerName localhost\nListen 127.0.0.1:{port}\n"
        f"LoadModule mpm_event_module {modules}/mod_mpm_event.so\n"
        f"LoadModule authz_core_module {modules}/mod_authz_core.so\n"
        f"PidFile {tmp}/httpd.pid\nMutex file:{tmp} default\n{user}"
        f"DocumentRoot {www}\nErrorLog {tmp}/error.log\nLogLevel info\n"
        'LogFormat "%h %l %u %t \\"%r\\" %>s %O \\"%{Referer}i\\" \\"%{User-Agent}i\\"" combined\n'
        f"CustomLog {tmp}/access.log combined\n<Directory {www}>\n  Require all granted\n</Directory>\n")
    proc = subprocess.Popen([exe, "-f", str(tmp / "httpd.conf"), "-DFOREGROUND"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: port_open(port)), "apache2 did not start"
        _requests(port)
        return _lines(tmp / "access.log", 3), _lines(tmp / "error.log", 4)
    finally:
        _stop(proc)


LOGGER_MESSAGES = [
    ["--rfc3164", "-t", "myapp", "--id=4242", 'hello 3164 "quoted" café'],
    ["--rfc5424", "-t", "myapp", "--msgid", "ID47", "--sd-id", "exampleSDID@32473", "--sd-param", 'iut="3"',
     "--sd-param", 'eventSource="App \\"x\\""', "hello 5424 café"],
    ["--rfc5424=notq", "-t", "other", "-p", "local0.err", "plain 5424"],
]


def run_rsyslog(tmp: Path) -> dict[str, list[bytes]]:
    """rsyslogd in the foreground, fed by `logger` over UDP: the RFC 3164 file (rsyslog's
    traditional format), the RFC 5424 one, and rsyslog's default file format (RFC 3339 stamps)."""
    exe = need("rsyslogd")
    logger = need("logger")
    port = free_port()
    files = {"rfc3164": "RSYSLOG_TraditionalFileFormat", "rfc5424": "RSYSLOG_SyslogProtocol23Format",
             "iso": "RSYSLOG_FileFormat"}
    (tmp / "rsyslog.conf").write_text(
        f'global(workDirectory="{tmp}")\nmodule(load="imudp")\n'
        f'input(type="imudp" address="127.0.0.1" port="{port}")\n'
        + "".join(f'action(type="omfile" file="{tmp}/{name}.log" template="{t}")\n' for name, t in files.items()))
    proc = subprocess.Popen([exe, "-n", "-f", str(tmp / "rsyslog.conf"), "-i", str(tmp / "rsyslogd.pid")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # UDP: nothing tells when it listens; resent below until seen
        deadline = time.monotonic() + 15
        while not (tmp / "iso.log").exists() and time.monotonic() < deadline:
            subprocess.run([logger, "-n", "127.0.0.1", "-P", str(port), "-d", "-t", "probe", "up"], check=True)
            time.sleep(0.2)
        for args in LOGGER_MESSAGES:
            subprocess.run([logger, "-n", "127.0.0.1", "-P", str(port), "-d", *args], check=True)
        out = {}
        for name in files:
            path = tmp / f"{name}.log"
            assert wait_for(lambda path=path: b"plain 5424" in path.read_bytes()), path
            out[name] = [line for line in path.read_bytes().splitlines() if b"probe" not in line]
        return out
    finally:
        _stop(proc)


def logger_datagrams(tmp: Path, calls: list[list[str]]) -> list[bytes]:
    """What `logger` sends to a unix datagram socket, as programs send to /dev/log (a syslog
    daemon reads these, with no hostname in RFC 3164's default): one datagram per call."""
    logger = need("logger")
    path = tmp / "devlog"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(10)
        out = []
        for args in calls:
            subprocess.run([logger, "-u", str(path), *args], check=True)
            out.append(sock.recv(65536))
        return out
