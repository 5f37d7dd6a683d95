"""The tap against a hostile or careless client (issue 20): a `match=` that would backtrack
for ever, parameters that are not numbers."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from pathlib import Path

from api_peers import get, get_json, running
from helpers import wait_for

#: a tag of 40 `a`: a backtracking matcher of `*a*a*...*b` tries about 40^10 ways on it
TAG = "a" * 40
CONFIG = f"""
api: {{address: "{{api}}"}}
sources:
  gen: {{type: exec, command: ["echo", '{{"a": 1}}'], interval: 0.1s, tag: {TAG}}}
sinks:
  out: {{type: discard, inputs: [gen]}}
"""


def _tap(port: int, **query: str) -> tuple[int, bytes]:
    return get(port, "/api/tap?" + urllib.parse.urlencode({"id": "gen", **query}))


def test_a_regular_expression_in_match_is_refused_and_a_glob_cannot_backtrack(tmp_path):
    with running(tmp_path, CONFIG) as (_, port):
        status, body = _tap(port, match="/(.*)*Z/")
        assert status == 400 and "regular expression" in json.loads(body)["error"], body
        # a tap whose pattern matches no tag of 40 `a` after trying every way (it stays open,
        # waiting for a match), and one beside it that matches: the loop is not held up
        with socket.create_connection(("127.0.0.1", port)) as stuck:
            stuck.sendall(b"GET /api/tap?id=gen&rate=0&match=" + b"*a" * 10 + b"*b HTTP/1.1\r\n\r\n")
            assert stuck.recv(12) == b"HTTP/1.1 200"
            status, body = _tap(port, match="a*a*a*a*a*a*a*a*a*a*", limit="2")
        assert status == 200 and [line["component"] for line in map(json.loads, body.splitlines())
                                  if "component" in line] == ["gen", "gen"]
        assert get(port, "/healthz")[0] == 200


def test_bad_parameters_are_400_with_a_reason(tmp_path):
    with running(tmp_path, CONFIG) as (_, port):
        for query in ({"limit": "²"}, {"rate": "²"}, {"limit": "9" * 5000}, {"limit": "-1"}, {"rate": "1e3"},
                      {"match": "a." * 200}):
            status, body = _tap(port, **query)
            assert status == 400 and json.loads(body)["error"], (query, status, body)


def _rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) * 1024


#: records of about 1 KB, 5,000 a second
BUSY = f"""
api: {{address: "{{api}}"}}
sources:
  gen: {{type: exec, command: "yes '{{\\"msg\\": \\"{"x" * 1000}\\"}}' | head -n 500", shell: true,
         format: json_lines, interval: 0.1s}}
sinks:
  out: {{type: discard, inputs: [gen]}}
"""


def _never_reading(port: int, n: int) -> list[socket.socket]:
    """`n` HTTP clients that ask for a tap of every event, then never read."""
    clients = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /api/tap?id=gen&rate=0 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        clients.append(s)
    return clients


def test_taps_that_never_read_are_bounded_in_bytes_told_what_they_missed_and_freed(tmp_path):
    with running(tmp_path, BUSY) as (proc, port):
        time.sleep(2)
        before = _rss(proc.pid)
        clients = _never_reading(port, 300)
        try:
            assert wait_for(lambda: get_json(port, "/api/components")[1]["taps"] == 300)
            time.sleep(3)  # each has filled what it may hold, and drops since
            during = _rss(proc.pid)
            # a reader beside them is served
            status, body = _tap(port, limit="50", rate="0")
            assert status == 200 and sum(len(json.loads(line).get("events", ())) for line in body.splitlines()) == 50
            # a slow one that reads at last is told what it missed
            late = clients.pop()
            late.settimeout(10)
            seen = b""
            while b'"dropped":' not in seen:
                seen += late.recv(65536)
            assert int(seen.split(b'"dropped":')[1].split(b"}")[0]) > 0
            late.close()
        finally:
            for s in clients:
                s.close()
        assert wait_for(lambda: get_json(port, "/api/components")[1]["taps"] == 0)
        time.sleep(1)
        after = _rss(proc.pid)
    MiB = 1024 * 1024
    seen = f"RSS before {before / MiB:.0f} MiB, with 300 taps {during / MiB:.0f}, after {after / MiB:.0f}"
    # together the taps hold at most TAPS_BYTES (16 MiB), and each its connection (~100 KiB);
    # they took 230 MiB, kept after they left, when each held 1,000 events and a socket's worth
    assert during - before < 16 * MiB + 300 * 150 * 1024, seen
    assert after - before < 24 * MiB, seen
