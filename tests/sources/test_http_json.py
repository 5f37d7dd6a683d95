"""Source http_json against a real HTTP server: documents, path, split, and failures."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging

import pytest
from helpers import FIXTURES, make_plugin, run_measured
from http_peers import Server


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def poll(source):
    return [r for _, _, r in asyncio.run(source.poll())]


def test_document_headers_path_and_post(server):
    raw = (FIXTURES / "json/podman-compat-info.http").read_bytes()  # a real endpoint's nested JSON
    body = raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[1]
    server.route("/stats", body)
    source = make_plugin("source", "http_json", url=f"{server.url}/stats", headers={"Authorization": "Bearer x"})
    assert poll(source) == [json.loads(body)]
    assert server.requests[-1][2]["Authorization"] == "Bearer x"
    server.route("/ops/stats", b'{"vm": {"memory": {"total": 123456789012345678901234}, "procs": 55}}')
    nested = make_plugin("source", "http_json", url=f"{server.url}/ops/stats", path="vm.memory")
    assert poll(nested) == [{"total": "123456789012345678901234"}]  # past 64 bits: its digits
    post = make_plugin("source", "http_json", url=f"{server.url}/stats", method="POST", body='{"q": 1}')
    poll(post)
    assert server.requests[-1][0] == "POST" and server.requests[-1][3] == b'{"q": 1}'


def test_split(server):
    server.route("/list", b'{"items": [{"a": 1}, {"a": 2}]}')
    source = make_plugin("source", "http_json", url=f"{server.url}/list", path="items", split=True)
    assert poll(source) == [{"a": 1}, {"a": 2}]


def test_failures_are_logged_per_state_change_and_polling_goes_on(server, caplog):
    caplog.set_level(logging.INFO)
    errors: list = []
    source = make_plugin("source", "http_json", url=f"{server.url}/s", timeout=0.3, errors=errors)
    server.route("/s", b"oops", status=500)
    assert poll(source) == [] and poll(source) == []
    server.route("/s", b"<html>not json</html>")
    assert poll(source) == []
    server.route("/s", b'{"ok": 1}', delay=1.0)
    assert poll(source) == []
    server.route("/s", b'{"ok": 2}')
    assert poll(source) == [{"ok": 2}]
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    # the URL once, what the server said quoted
    assert logged == [f"cannot get {server.url}/s: HTTP 500: 'oops'"]
    # the good news at info: a warning would page someone for a problem that is gone
    assert [r.levelname for r in caplog.records if "answers again" in r.getMessage()] == ["INFO"]
    assert source.ctx.counters["errors"] == 4
    assert errors and "not JSON" in errors[0][2]["error"]


def test_server_down(caplog):
    source = make_plugin("source", "http_json", url="http://127.0.0.1:1/x", timeout=0.5)
    assert poll(source) == []
    assert "cannot get http://127.0.0.1:1/x" in caplog.text


def _once(tmp_path, source: str):
    conf = tmp_path / "c.yaml"
    conf.write_text(f"sources:\n  s: {source}\nsinks:\n  out: {{type: stdout, inputs: [s]}}\n")
    return run_measured("run", "--once", str(conf))


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_answer_past_max_bytes_fails_the_poll_without_taking_its_size_in_memory(server, tmp_path, chunked):
    big = b'{"items": [' + b",".join([b'{"k": "' + b"v" * 90 + b'"}'] * 500_000) + b"]}"  # 50 MB
    headers = {"Content-Type": "application/json", **({"Transfer-Encoding": "chunked"} if chunked else {})}
    server.route("/small", b'{"items": []}', headers=headers)
    server.route("/big", big, headers=headers)
    small, small_peak = _once(tmp_path, f"{{type: http_json, url: '{server.url}/small'}}")
    assert small.stdout == b'{"items":[]}\n', small.stderr
    result, peak = _once(tmp_path, f"{{type: http_json, url: '{server.url}/big'}}")
    assert result.stdout == b""
    assert (f"cannot get {server.url}/big: answer larger than max_bytes (16777216 bytes), not parsed"
            in result.stderr.decode())
    # read whole and parsed, this answer took 572 MB; bounded, at most max_bytes more than a small one
    assert peak - small_peak < 24 << 20, (peak, small_peak)


def test_a_gzip_answer_is_bounded_by_its_inflated_size(server):
    doc = b'{"pad": "' + b" " * 2_000_000 + b'"}'
    server.route("/gz", gzip.compress(doc), headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    source = make_plugin("source", "http_json", url=f"{server.url}/gz", max_bytes=len(doc))
    assert poll(source) == [json.loads(doc)]  # inflated, and exactly max_bytes is fine
    source = make_plugin("source", "http_json", url=f"{server.url}/gz", max_bytes=len(doc) - 1)
    assert poll(source) == []
    assert source.ctx.last_failure.endswith(f"answer larger than max_bytes ({len(doc) - 1} bytes), not parsed")
