"""The tap against a hostile or careless client (issue 20): a `match=` that would backtrack
for ever, parameters that are not numbers."""

from __future__ import annotations

import json
import socket
import urllib.parse

from api_peers import get, running

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
