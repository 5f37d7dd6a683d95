"""Sink http against the real VictoriaMetrics (remote_write_peers: /api/v1/import JSON lines and
InfluxDB line protocol on /write, read back through /api/v1/export) and against
our own http source: refused records found by halving, Retry-After, auth and TLS, and nothing
lost when either side is killed and started again."""

from __future__ import annotations

import collections
import http.client
import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from forward_peers import Receiver, feeding, numbered, send
from helpers import free_port, port_open, run_pipeline, start_pipeline, wait_for
from remote_write_peers import VictoriaMetrics

from pipeline.buffer.file import read_chunk

#: sample times, in seconds (the VictoriaMetrics of remote_write_peers keeps 100 years)
T0 = 1_700_000_000


@pytest.fixture(scope="module")
def vm(tmp_path_factory):
    peer = VictoriaMetrics(tmp_path_factory.mktemp("vm"))
    peer.start()
    yield peer
    peer.stop()


def series(name: str, **labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"__name__": name, **labels}.items()))


def sender(tmp_path, sink: str, source: str = "{type: stdin, tag: app.test}", name: str = "send.yaml",
           extra: str = ""):
    conf = tmp_path / name
    conf.write_text(f"shutdown_timeout: 5s\nsources:\n  in: {source}\nsinks:\n  out: {{type: http, inputs: [in], "
                    f"{sink}}}\n{extra}")
    return conf


def test_json_lines_to_victoriametrics_import_gzipped(tmp_path, vm):
    t = T0
    lines = b"".join(json.dumps({"metric": {"__name__": "pipeline_import", "job": "test", "n": str(i % 3)},
                                 "values": [i * 1.5], "timestamps": [(t + i) * 1000]}).encode() + b"\n"
                     for i in range(300))
    conf = sender(tmp_path, f"url: '{vm.base}/api/v1/import', compress: gzip, chunk_max_events: 50")
    result = send(conf, lines)
    assert result.returncode == 0, result.stderr.decode()
    want = sorted((series("pipeline_import", job="test", n=str(i % 3)), (t + i) * 1000, i * 1.5) for i in range(300))
    assert wait_for(lambda: vm.samples('{__name__="pipeline_import"}') == want, 30)


def test_influx_line_protocol_to_victoriametrics_write(tmp_path, vm):
    t = T0
    lines = b"".join(json.dumps({"host": f"web-{i % 2}", "cpu": i / 4, "requests": i, "up": True, "name": "x",
                                 "mem": {"rss": 1000 + i}, "time": t + i}).encode() + b"\n" for i in range(100))
    source = "{type: stdin, tag: app.stats, format: {type: json, time_key: time, time_format: unix}}"
    conf = sender(tmp_path, f"url: '{vm.base}/write', format: influx, measurement: app, tag_keys: [host]", source)
    result = send(conf, lines)
    assert result.returncode == 0, result.stderr.decode()
    want = sorted((series(f"app_{field}", host=f"web-{i % 2}"), (t + i) * 1000, float(value))
                  for i in range(100)
                  for field, value in (("cpu", i / 4), ("requests", i), ("up", 1), ("mem.rss", 1000 + i)))
    assert wait_for(lambda: vm.samples('{__name__=~"app_.*"}') == want, 30)


def test_records_a_server_refuses_are_found_by_halving_and_go_to_errors(tmp_path, vm):
    # VictoriaMetrics refuses an extra_label without `=`: the events of the tag `broken`
    t = T0
    port = free_port()
    errors = tmp_path / "errors.jsonl"
    conf = sender(tmp_path, f"url: '{vm.base}/api/v1/import?extra_label=${{tag}}', flush_interval: 1s",
                  f"{{type: http, port: {port}}}",
                  extra=f"  err: {{type: file, inputs: [_errors], path: {errors}}}\n")
    proc = start_pipeline("run", str(conf))
    try:
        assert wait_for(lambda: port_open(port)), proc.stderr
        body = "".join(json.dumps({"metric": {"__name__": "pipeline_refused", "i": str(i)}, "values": [i],
                                   "timestamps": [(t + i) * 1000]}) + "\n" for i in range(20))
        for path in ("/env=prod", "/broken", "/env=dev"):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("POST", path, body, {"Content-Type": "application/x-ndjson"})
            assert c.getresponse().status == 200
            c.close()
        assert wait_for(lambda: errors.exists() and len(errors.read_text().splitlines()) == 20, 30)
        want = sorted((series("pipeline_refused", env=e, i=str(i)), (t + i) * 1000, float(i))
                      for e in ("prod", "dev") for i in range(20))
        # each written once: the request of another tag, taken before, is not sent again while halving
        assert wait_for(lambda: vm.samples('{__name__="pipeline_refused"}') == want, 30)
        rows = [json.loads(line) for line in errors.read_text().splitlines()]
        assert {r["tag"] for r in rows} == {"broken"} and "HTTP 400" in rows[0]["error"]
        assert "extra_label" in rows[0]["error"]  # VictoriaMetrics' own answer
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_record_past_the_receivers_max_body_is_refused_alone(tmp_path):
    r = Receiver(tmp_path, type="http", source="max_body_bytes: 2KiB")
    errors = tmp_path / "errors.jsonl"
    try:
        conf = sender(tmp_path, f"url: 'http://127.0.0.1:{r.port}/big'",
                      extra=f"  err: {{type: file, inputs: [_errors], path: {errors}}}\n")
        lines = numbered(30) + b'{"n": 30, "payload": "%s"}\n' % (b"x" * 5000) + numbered(30, 31)
        result = send(conf, lines)
        assert result.returncode == 0, result.stderr.decode()
        assert sorted(x["n"] for x in r.records()) == [n for n in range(61) if n != 30]
        (refused,) = [json.loads(line) for line in errors.read_text().splitlines()]
        assert "HTTP 413" in refused["error"] and "max_body_bytes" in refused["error"]
    finally:
        r.stop()


def components(api_port: int) -> dict[str, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/components", timeout=5) as a:
        return {c["id"]: c for c in json.load(a)["components"]}


def test_retry_after_of_a_503_is_waited_for(tmp_path):
    # the receiver's buffer holds one chunk (its forward sink has nowhere to send): it
    # answers the next with 503 and Retry-After: 3
    port, api, nowhere = free_port(), free_port(), free_port()
    recv = tmp_path / "recv.yaml"
    recv.write_text(f"api: {{address: 127.0.0.1:{api}}}\nsources:\n  in: {{type: http, port: {port}, retry_after: 3s}}\n"
                    f"sinks:\n  fw: {{type: forward, inputs: [in], servers: [{{host: 127.0.0.1, port: {nowhere}}}], "
                    f"buffer: {{max_bytes: 16KiB}}}}\n")
    receiver = start_pipeline("run", str(recv))
    conf = sender(tmp_path, f"url: 'http://127.0.0.1:{port}/', chunk_max_events: 20")
    try:
        assert wait_for(lambda: port_open(port) and port_open(api)), receiver.stderr
        proc = start_pipeline("run", str(conf), stdin=subprocess.PIPE)
        proc.stdin.write(numbered(100))
        proc.stdin.flush()
        assert wait_for(lambda: components(api)["in"]["counters"].get("http_503", 0) >= 1)
        first = time.monotonic()
        time.sleep(2)  # the sender's own backoff would have tried 2 or 3 times by now
        assert components(api)["in"]["counters"]["http_503"] == 1
        assert wait_for(lambda: components(api)["in"]["counters"]["http_503"] == 2, 10)
        assert time.monotonic() - first >= 2.5
        proc.kill()
        proc.wait(timeout=10)
    finally:
        receiver.terminate()
        receiver.wait(timeout=30)


def test_basic_auth_and_bearer_token_over_tls_on_one_kept_alive_connection(tmp_path, certs):
    api = free_port()
    r = Receiver(tmp_path, type="http", source=f"users: [{{username: ann, password: pw}}], token: s3cret, "
                                               f"idle_timeout: 1m, tls: {{cert: {certs}/cert.pem, key: {certs}/key.pem}}",
                 extra=f"api: {{address: 127.0.0.1:{api}}}\n")
    url = f"url: 'https://localhost:{r.port}/secure', tls: {{ca: {certs}/cert.pem}}"
    try:
        conf = sender(tmp_path, f"{url}, username: ann, password: pw, format: msgpack, chunk_max_events: 10")
        result = send(conf, numbered(100))
        assert result.returncode == 0, result.stderr.decode()
        assert sorted(x["n"] for x in r.records()) == list(range(100))
        counters = components(api)["in"]["counters"]
        assert counters["requests"] == 10 and counters["connections"] == 1  # kept alive
        bearer = sender(tmp_path, f"{url}, bearer_token: s3cret", name="bearer.yaml")
        assert send(bearer, numbered(1, 100)).returncode == 0
        assert wait_for(lambda: len(r.records()) == 101)
        bad = sender(tmp_path, f"{url}, bearer_token: wrong, retry_timeout: 1s", name="bad.yaml")
        result = send(bad, numbered(1))
        assert result.returncode == 1 and b"HTTP 401" in result.stderr  # retried, then given up: not data's fault
    finally:
        err = r.stop()
    assert err.count("request refused (401)") == 1  # logged once a minute


def test_tags_in_the_url_stay_one_path_segment(tmp_path):
    # the sender's own http source makes the tags: each path segment %-decoded
    r = Receiver(tmp_path, type="http", source="token: s3cret")
    port = free_port()
    conf = sender(tmp_path, f"url: 'http://127.0.0.1:{r.port}/logs/${{tag}}?from=test', method: PUT, format: json, "
                            "headers: {Authorization: Bearer s3cret}, tag_key: sent_tag, flush_interval: 200ms",
                  f"{{type: http, port: {port}}}")
    proc = start_pipeline("run", str(conf))
    try:
        assert wait_for(lambda: port_open(port)), proc.stderr
        for path in ("/%2E%2E", "/..%2Fadmin%3Fx=1%23y", "/plain", "/a/b"):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("POST", path, '[{"i": 1}, {"i": 2}]', {"Content-Type": "application/json"})
            assert c.getresponse().status == 200
            c.close()
        assert wait_for(lambda: len(r.records()) == 8)
        got = {(x["tag"], x["sent_tag"]) for x in r.records()}
        assert got == {("logs...", ".."), ("logs.../admin?x=1#y", "../admin?x=1#y"), ("logs.plain", "plain"),
                       ("logs.a.b", "a.b")}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        r.stop()


def test_a_tag_cannot_name_the_host(tmp_path):
    conf = sender(tmp_path, "url: 'http://${tag}.example.com/in'")
    result = run_pipeline("check", str(conf))
    assert result.returncode == 2 and b"sinks.out.url: ${tag} may be in the url's path or query" in result.stderr


def test_receiver_killed_mid_stream_and_restarted(tmp_path):
    receiver = Receiver(tmp_path, type="http", sink=f"buffer: {{type: file, path: {tmp_path / 'recv-buf'}}}")
    conf = sender(tmp_path, f"url: 'http://127.0.0.1:{receiver.port}/app.test', retry_max_interval: 0.5s, "
                            f"chunk_max_events: 100, buffer: {{type: file, path: {tmp_path / 'buf'}}}")
    conf.write_text(conf.read_text().replace("shutdown_timeout: 5s", "shutdown_timeout: 30s"))
    proc = start_pipeline("run", str(conf), stdin=subprocess.PIPE)
    total = 3000
    writer = feeding(proc, total)
    assert wait_for(lambda: len(receiver.records()) > 300)
    receiver.kill()  # mid-stream: answers may be lost, what was answered 200 is in its file buffer
    time.sleep(1.0)
    receiver.start()
    writer.join()
    assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()
    assert wait_for(lambda: set(r["n"] for r in receiver.records()) == set(range(total)))
    counts = collections.Counter(r["n"] for r in receiver.records())
    print(f"{total} events, {sum(c - 1 for c in counts.values())} duplicates after the receiver's crash")
    receiver.stop()


def test_sender_killed_with_a_file_buffer_and_restarted(tmp_path):
    buffer = tmp_path / "buf"
    port = free_port()  # no receiver yet: nothing can be delivered
    conf = sender(tmp_path, f"url: 'http://127.0.0.1:{port}/app.test', retry_max_interval: 0.5s, "
                            f"buffer: {{type: file, path: {buffer}}}")
    proc = start_pipeline("run", str(conf), stdin=subprocess.PIPE)
    proc.stdin.write(numbered(2000))
    proc.stdin.flush()
    assert wait_for(lambda: sum(len(read_chunk(p)[0]) for p in buffer.glob("*.chunk")) == 2000)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    receiver = Receiver(tmp_path, type="http", port=port)
    try:
        again = start_pipeline("run", str(conf), stdin=subprocess.PIPE)
        again.stdin.close()  # nothing new: only what the first run left
        assert again.wait(timeout=60) == 0, again.stderr.read().decode()
        assert sorted(r["n"] for r in receiver.records()) == list(range(2000))
        assert not list(buffer.glob("*.chunk"))
    finally:
        receiver.stop()
