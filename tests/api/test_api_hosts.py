"""The api answers only requests that name it (issue 20, point 6): a web page that points a
name of its own at 127.0.0.1 (DNS rebinding) must not read /api/tap or /api/components."""

from __future__ import annotations

import http.client
import json

from api_peers import running

CONFIG = """
api: {address: "{api}"}
sources:
  gen: {type: exec, command: ["echo", '{"a": 1}'], interval: 0.2s}
sinks:
  out: {type: discard, inputs: [gen]}
"""


def ask(port: int, path: str, host: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        if host is None:  # http.client adds none when told to skip it
            conn.putrequest("GET", path, skip_host=True)
            conn.endheaders()
        else:
            conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_host_that_is_not_this_api_is_refused_with_421(tmp_path):
    with running(tmp_path, CONFIG) as (proc, port):
        for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "LocalHost.", "app.localhost", None):
            assert ask(port, "/api/components", host)[0] == 200, host
        for host in (f"evil.example:{port}", "127.0.0.1.evil.example", "10.1.2.3", ""):
            for path in ("/api/tap?id=gen&limit=1", "/api/components", "/healthz"):
                status, body = ask(port, path, host)
                assert status == 421 and "allowed_hosts" in json.loads(body)["error"], (host, path, status, body)
        status, body = ask(port, "/api/tap?id=gen&limit=1", f"localhost:{port}")
        assert status == 200 and b'"component":"gen"' in body
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert err.decode().count("refused a request for host") == 1, err  # once a minute


def test_allowed_hosts_names_more(tmp_path):
    allowing = CONFIG.replace('address: "{api}"', 'address: "{api}", allowed_hosts: [pipeline.example.net]')
    with running(tmp_path, allowing) as (_, port):
        for host in (f"pipeline.example.net:{port}", "PIPELINE.example.net.", "localhost"):
            assert ask(port, "/api/components", host)[0] == 200, host
        assert ask(port, "/api/components", "pipeline.example.net.evil")[0] == 421
