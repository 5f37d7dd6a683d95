"""Source http: fluentd in_http's interface and NDJSON, from curl and Python's http.client;
bodies taken whole or refused with the reason, gzip, limits, auth, TLS, keep-alive, acks and
503 while a buffer is full."""

from __future__ import annotations

import gzip
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading
from urllib.parse import quote_from_bytes

import msgpack
import pytest
from forward_peers import Receiver
from helpers import free_port, port_open, start_pipeline, wait_for


def curl(*args: str) -> tuple[int, str]:
    """The real curl (Debian's `curl`): the status and the body of its answer."""
    exe = shutil.which("curl")
    if exe is None:
        pytest.skip("curl is not installed (apt-get install curl)")
    done = subprocess.run([exe, "-s", "-S", "-o", "-", "-w", "\n%{http_code}", *args], capture_output=True,
                          timeout=30, text=True)
    body, _, status = done.stdout.rpartition("\n")
    assert status.isdigit(), done.stderr
    return int(status), body


def post(port: int, path: str, body: bytes, headers: dict[str, str] | None = None,
         conn: http.client.HTTPConnection | None = None) -> tuple[int, str, dict[str, str]]:
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request("POST", path, body=body, headers=headers or {})
    r = c.getresponse()
    answer = r.read().decode()
    if conn is None:
        c.close()
    return r.status, answer, dict(r.headers)


def ndjson(start: int, n: int) -> bytes:
    return b"".join(b'{"n": %d, "msg": "GET /x HTTP/1.1"}\n' % i for i in range(start, start + n))


@pytest.fixture
def receiver(tmp_path):
    r = Receiver(tmp_path, type="http", source="remote_addr_key: REMOTE_ADDR",
                 extra=f"  err: {{type: file, inputs: [_errors], path: {tmp_path / 'errors.jsonl'}}}\n")
    yield r
    r.stop()


def closed(s: socket.socket) -> bool:
    try:
        return s.recv(100) == b""
    except ConnectionResetError:  # closed at once (aborted): its descriptor is free for the next
        return True


def errors(r: Receiver) -> list[dict]:
    path = r.dir.parent / "errors.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_fluentd_in_http_requests_from_curl(receiver):
    url = f"http://127.0.0.1:{receiver.port}"
    assert curl("-X", "POST", "-d", 'json={"action":"login","user":2}', f"{url}/test.tag.here") == (200, "")
    assert curl("-H", "Content-Type: application/json", "-d", '[{"a":1,"time":1700000000.5},{"a":2}]',
                f"{url}/app/web?time=1700000100") == (200, "")
    assert curl("-d", 'json={"b":1}', f"{url}/timed?time=1700000200") == (200, "")
    assert wait_for(lambda: len(receiver.records()) == 4)
    rows = receiver.records()
    assert rows[0]["tag"] == "test.tag.here" and rows[0]["action"] == "login" and rows[0]["REMOTE_ADDR"] == "127.0.0.1"
    assert [(r["tag"], r["time"], r["a"]) for r in rows[1:3]] == [("app.web", 1700000000.5, 1),
                                                                  ("app.web", 1700000100.0, 2)]
    assert rows[3]["time"] == 1700000200.0 and "time" not in {k for k in rows[1] if k != "time"}


def test_msgpack_bodies_and_form_fields(receiver):
    records = [{"m": i, "bin": "ü"} for i in range(3)]
    assert post(receiver.port, "/mp", msgpack.packb(records), {"Content-Type": "application/msgpack"})[0] == 200
    stream = b"".join(msgpack.packb(r) for r in records)
    assert post(receiver.port, "/mp", stream, {"Content-Type": "application/x-msgpack"})[0] == 200
    form = b"msgpack=" + quote_from_bytes(msgpack.packb({"m": 9})).encode()
    assert post(receiver.port, "/form", form, {"Content-Type": "application/x-www-form-urlencoded"})[0] == 200
    assert wait_for(lambda: len(receiver.records()) == 7)
    assert [r["m"] for r in receiver.records()] == [0, 1, 2, 0, 1, 2, 9]


def test_ndjson_bodies_over_one_kept_alive_connection(receiver):
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=20)
    conn.connect()
    sock = conn.sock
    for i in range(5):
        status, _, headers = post(receiver.port, "/nd", ndjson(i * 1000, 1000),
                                  {"Content-Type": "application/x-ndjson"}, conn=conn)
        assert status == 200 and "close" not in headers.get("Connection", "")
        assert conn.sock is sock  # never closed and opened again
    conn.close()
    assert wait_for(lambda: len(receiver.records()) == 5000)
    assert [r["n"] for r in receiver.records()] == list(range(5000))


def test_gzip_bodies_from_curl(receiver, tmp_path):
    body = tmp_path / "body.gz"
    body.write_bytes(gzip.compress(ndjson(0, 100)))
    url = f"http://127.0.0.1:{receiver.port}/gz"
    assert curl("-H", "Content-Encoding: gzip", "-H", "Content-Type: application/x-ndjson",
                "--data-binary", f"@{body}", url) == (200, "")
    assert wait_for(lambda: len(receiver.records()) == 100)
    body.write_bytes(b"\x1f\x8b not gzip")
    status, text = curl("-H", "Content-Encoding: gzip", "--data-binary", f"@{body}", url)
    assert status == 400 and "gzip" in text


def test_a_body_that_does_not_parse_is_refused_whole_with_the_reason(receiver):
    body = ndjson(0, 2) + b'{"n": 2, "broken\n' + ndjson(3, 2)
    status, text, _ = post(receiver.port, "/bad", body, {"Content-Type": "application/x-ndjson"})
    assert status == 400 and text.startswith("line 3: not JSON")
    status, text, _ = post(receiver.port, "/bad", b'[{"a": 1}, 2]', {"Content-Type": "application/json"})
    assert (status, text) == (400, "the body: element 1 is not an object\n")
    status, text, _ = post(receiver.port, "/bad", b"\x93\x01", {"Content-Type": "application/msgpack"})
    assert status == 400 and "msgpack" in text
    c = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=10)
    c.request("POST", "/big", b"x", {"Content-Length": str(1 << 40)})
    assert c.getresponse().status == 413
    # in `_errors` now, not with the next good body
    assert wait_for(lambda: len(errors(receiver)) == 4)
    assert post(receiver.port, "/good", ndjson(0, 1), {"Content-Type": "application/x-ndjson"})[0] == 200
    assert wait_for(lambda: receiver.records())
    assert [r["tag"] for r in receiver.records()] == ["good"]  # nothing of a refused body
    assert errors(receiver)[0]["kind"] == "http_400" and "broken" in errors(receiver)[0]["sample"]
    assert errors(receiver)[3]["kind"] == "http_413" and errors(receiver)[3]["origin"].startswith("127.0.0.1:")


def test_records_are_made_to_the_edge_rule(receiver):
    deep: dict = {}
    for _ in range(300):
        deep = {"d": deep}
    status, text, _ = post(receiver.port, "/deep", json.dumps(deep).encode(), {"Content-Type": "application/json"})
    assert status == 400 and "nested deeper than 254" in text
    body = b'{"big": 123456789012345678901234567890, "text": "a\xffb"}\n{"n": 1}\n'
    assert post(receiver.port, "/edge", body, {"Content-Type": "application/x-ndjson"})[0] == 200
    assert wait_for(lambda: len(receiver.records()) == 2)
    first, second = receiver.records()
    assert first["big"] == "123456789012345678901234567890" and first["text"] == "a\ufffdb" and second["n"] == 1


def test_past_max_body_bytes_413_plain_chunked_and_inflated(tmp_path):
    r = Receiver(tmp_path, type="http", source="max_body_bytes: 1KiB")
    try:
        url = f"http://127.0.0.1:{r.port}/big"
        big = tmp_path / "big.json"
        big.write_bytes(ndjson(0, 100))
        assert curl("--data-binary", f"@{big}", url)[0] == 413
        assert curl("-H", "Transfer-Encoding: chunked", "--data-binary", f"@{big}", url)[0] == 413
        bomb = tmp_path / "bomb.gz"
        bomb.write_bytes(gzip.compress(b" " * 10_000_000))
        status, text = curl("-H", "Content-Encoding: gzip", "--data-binary", f"@{bomb}", url)
        assert status == 413 and "max_body_bytes" in text
        assert curl("-H", "Transfer-Encoding: chunked", "-H", "Content-Type: application/json",
                    "-d", '{"small": 1}', url) == (200, "")
        assert wait_for(lambda: len(r.records()) == 1)
    finally:
        r.stop()


def test_format_set_whatever_the_content_type(tmp_path):
    r = Receiver(tmp_path, type="http", source="format: ndjson")
    try:  # curl -d says application/x-www-form-urlencoded
        assert curl("--data-binary", '{"a": 1}\n{"a": 2}', f"http://127.0.0.1:{r.port}/nd") == (200, "")
        status, text = curl("-d", 'json={"a":3}', f"http://127.0.0.1:{r.port}/nd")
        assert status == 400 and text.startswith("line 1: not JSON")
        assert wait_for(lambda: [x["a"] for x in r.records()] == [1, 2])
    finally:
        r.stop()


def test_bearer_token_and_basic_auth(tmp_path):
    r = Receiver(tmp_path, type="http", source="token: s3cret, users: [{username: ann, password: pw}]")
    try:
        url = f"http://127.0.0.1:{r.port}/auth"
        assert curl("-d", 'json={"a":0}', url)[0] == 401
        assert curl("-H", "Authorization: Bearer wrong", "-d", 'json={"a":0}', url)[0] == 401
        assert curl("-u", "ann:nope", "-d", 'json={"a":0}', url)[0] == 401
        assert curl("-H", "Authorization: Bearer s3cret", "-d", 'json={"a":1}', url) == (200, "")
        assert curl("-u", "ann:pw", "-d", 'json={"a":2}', url) == (200, "")
        assert wait_for(lambda: len(r.records()) == 2)
        assert [x["a"] for x in r.records()] == [1, 2]
    finally:
        r.stop()


def test_tls(tmp_path, certs):
    r = Receiver(tmp_path, type="http", source=f"tls: {{cert: {certs}/cert.pem, key: {certs}/key.pem}}")
    try:
        url = f"https://localhost:{r.port}/tls"
        assert curl("--cacert", f"{certs}/cert.pem", "-d", 'json={"a":1}', url) == (200, "")
        ctx = ssl.create_default_context(cafile=f"{certs}/cert.pem")
        c = http.client.HTTPSConnection("localhost", r.port, context=ctx, timeout=10)
        assert post(r.port, "/tls", b'{"a": 2}', {"Content-Type": "application/json"}, conn=c)[0] == 200
        with pytest.raises(ssl.SSLError):  # a client that does not trust it
            http.client.HTTPSConnection("localhost", r.port, timeout=10).request("POST", "/", b"{}")
        assert wait_for(lambda: len(r.records()) == 2)
    finally:
        r.stop()


def test_idle_connections_are_closed_and_the_others_served(tmp_path):
    r = Receiver(tmp_path, type="http", source="idle_timeout: 300ms, max_connections: 3")
    try:
        idle = [socket.create_connection(("127.0.0.1", r.port), timeout=10) for _ in range(3)]
        idle[0].sendall(b"POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")  # a body that never ends
        assert post(r.port, "/ok", b'{"ok": 1}', {"Content-Type": "application/json"})[0] == 200
        for s in idle:
            assert closed(s)  # by the server: to make room, or idle too long
            s.close()
        assert wait_for(lambda: len(r.records()) == 1)
    finally:
        err = r.stop()
    assert "max_connections): closed the one from" in err


def relay(tmp_path, source: str, sink: str, downstream: int):
    """`http source -> forward sink` to `downstream` (a pipeline process), and the source's port."""
    port = free_port()
    conf = tmp_path / "relay.yaml"
    conf.write_text(f"shutdown_timeout: 1s\nsources:\n  in: {{type: http, port: {port}, {source}}}\n"
                    f"sinks:\n  fw: {{type: forward, inputs: [in], servers: [{{host: 127.0.0.1, port: {downstream}}}], "
                    f"{sink}}}\n")
    proc = start_pipeline("run", str(conf))
    assert wait_for(lambda: port_open(port)), proc.stderr
    return proc, port


def test_503_with_retry_after_while_the_buffer_is_full(tmp_path):
    proc, port = relay(tmp_path, "retry_after: 7s", "buffer: {max_bytes: 64KiB}", free_port())
    try:
        answers = []
        for i in range(40):
            status, text, headers = post(port, "/fill", ndjson(i * 100, 100), {"Content-Type": "application/x-ndjson"})
            answers.append(status)
            if status == 503:
                assert headers["Retry-After"] == "7" and "sink fw" in text
                break
        assert answers[0] == 200 and answers[-1] == 503
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_ack_delivery_answers_once_the_next_hop_has_the_records(tmp_path):
    downstream = free_port()
    proc, port = relay(tmp_path, "ack: delivery", "retry_max_interval: 0.3s", downstream)
    try:
        answer: list[int] = []
        sending = threading.Thread(target=lambda: answer.append(
            post(port, "/acked", b'{"a": 1}', {"Content-Type": "application/json"})[0]))
        sending.start()
        sending.join(2)
        assert answer == [], "answered before the next hop had the record"
        final = Receiver(tmp_path, name="final", port=downstream)
        try:
            sending.join(20)
            assert answer == [200]
            assert wait_for(lambda: [x["a"] for x in final.records()] == [1])
        finally:
            final.stop()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
