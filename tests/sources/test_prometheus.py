import asyncio
import math
import shutil
import subprocess
from contextlib import contextmanager

import pytest
from aiohttp import web
from forward_peers import Receiver
from helpers import FIXTURES, ROOT, free_port, make_plugin, port_open, run_pipeline, wait_for

from pipeline.prometheus_text import parse

PROM = FIXTURES / "prometheus"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"


def _recorded(name: str) -> tuple[str, bytes]:
    """(content type, body) of a recorded HTTP response."""
    raw = (PROM / name).read_bytes()
    head, body = raw.split(b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n", 1)
    ctype = next(line.split(b":", 1)[1].strip() for line in head.splitlines()
                 if line.lower().startswith(b"content-type:"))
    return ctype.decode(), body


async def _scrape(body: bytes, content_type: str, encoding: str | None = None, **options):
    headers = {"Content-Type": content_type, **({"Content-Encoding": encoding} if encoding else {})}

    async def metrics(request):
        return web.Response(body=body, headers=headers)
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    src = make_plugin("source", "prometheus", url=f"http://127.0.0.1:{port}/metrics", **options)
    await src.start()
    try:
        return await src.poll()
    finally:
        await src.stop()
        await runner.cleanup()


def _by_series(batch):
    return {(r["name"], tuple(sorted(r["labels"].items()))): r for _, _, r in batch}


def test_text_format_escapes_special_values_and_types():
    ctype, body = _recorded("promclient-text-0.0.4.http")
    series = _by_series(asyncio.run(_scrape(body, ctype)))
    esc = {dict(k[1])["v"]: r["value"] for k, r in series.items() if k[0] == "app_label_escaping"}
    assert esc == {'say "hi"': 1.0, "C:\\path\\x": 2.0, "line1\nline2": 3.0}
    assert series[("app_queue_depth", (("queue", "bulk"),))]["value"] == math.inf
    assert math.isnan(series[("app_last_success_ratio", ())]["value"])
    assert series[("app_min_free_bytes", ())]["value"] == -math.inf
    bucket = series[("app_request_latency_seconds_bucket", (("le", "+Inf"), ("path", "/")))]
    assert bucket["value"] == 313.0 and bucket["type"] == "histogram"
    assert series[("app_response_size_bytes_count", ())]["type"] == "summary"


def test_openmetrics_and_text_give_the_same_series():
    om = parse(_recorded("promclient-openmetrics.http")[1].decode(), openmetrics=True)
    text = parse(_recorded("promclient-text-0.0.4.http")[1].decode())
    assert not om.errors and not text.errors
    om_hist = {(s.name, tuple(s.labels.items())) for s in om.samples if s.name.endswith("_bucket")}
    text_hist = {(s.name, tuple(s.labels.items())) for s in text.samples if s.name.endswith("_bucket")}
    assert om_hist and om_hist <= text_hist
    assert {s.type for s in om.samples} >= {"counter", "gauge", "histogram", "summary", "info"}


def test_timestamps_and_bad_lines():
    text = ('# TYPE a counter\na_total{x="1"} 5 1700000000123\nnot a sample line\n'
            'b{x="unterminated} 1\nc 1.445257e+06\n')
    exp = parse(text)
    assert [(s.name, s.value, s.time_ns, s.type) for s in exp.samples] == [
        ("a_total", 5.0, 1700000000123 * 1_000_000, "counter"), ("c", 1445257.0, None, "untyped")]
    assert [n for n, _ in exp.errors] == [3, 4]
    om = parse("a_total 5 1700000000.5 # {trace=\"x\"} 1\n# EOF\nignored 1\n", openmetrics=True)
    assert [(s.value, s.time_ns) for s in om.samples] == [(5.0, 1_700_000_000_500_000_000)]


def test_node_exporter_recording_grouped_with_globs():
    body = (PROM / "node-000.txt").read_bytes()
    batch = asyncio.run(_scrape(body, "text/plain; version=0.0.4", mode="grouped",
                                metrics=["node_cpu_*"], exclude=["node_cpu_guest*"]))
    records = [r for _, _, r in batch]
    idle0 = next(r for r in records if r.get("cpu") == "0" and r.get("mode") == "idle")
    assert idle0["node_cpu_seconds_total"] == 904.59
    assert all(k in ("cpu", "mode", "node_cpu_seconds_total") for r in records for k in r)


def test_gzip_body_as_node_exporter_sends_it():
    body = (PROM / "node-gzip.raw.gz").read_bytes()
    batch = asyncio.run(_scrape(body, "text/plain; version=0.0.4; charset=utf-8", "gzip",
                                metrics=["node_cpu_seconds_total"]))
    assert batch and all(r["type"] == "counter" and r["labels"].keys() == {"cpu", "mode"} for _, _, r in batch)


def test_bad_lines_are_counted_good_ones_kept():
    errors: list = []
    batch = asyncio.run(_scrape(b"ok 1\nbroken{ 2\n", "text/plain", errors=errors))
    assert [r["name"] for _, _, r in batch] == ["ok"]
    assert len(errors) == 1 and "line 2" in errors[0][2]["error"]


@contextmanager
def _node_exporter():
    """A real node_exporter on a free 127.0.0.1 port, cpu and loadavg collectors only (quick)."""
    port = free_port()
    proc = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
                             "--collector.disable-defaults", "--collector.cpu", "--collector.loadavg"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: port_open(port) or proc.poll() is not None, timeout=10)
        assert proc.poll() is None, "node_exporter exited"
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


needs_node_exporter = pytest.mark.skipif(not shutil.which(NODE_EXPORTER),
                                         reason="Debian prometheus-node-exporter not installed")


@needs_node_exporter
def test_real_node_exporter():
    async def main(url):
        src = make_plugin("source", "prometheus", url=url, mode="grouped",
                          metrics=["node_cpu_seconds_total", "node_load1"])
        await src.start()
        try:
            return await src.poll(), src
        finally:
            await src.stop()
    with _node_exporter() as url:
        batch, src = asyncio.run(main(url))
    records = [r for _, _, r in batch]
    assert src.ctx.counters["errors"] == 0
    assert any("node_load1" in r for r in records)
    cpu = [r for r in records if "node_cpu_seconds_total" in r]
    assert {r["mode"] for r in cpu} >= {"idle", "user", "system"}
    assert all(r["node_cpu_seconds_total"] >= 0 for r in cpu)


@needs_node_exporter
def test_node_exporter_example_conf_gives_cpu_rates(tmp_path):
    receiver = Receiver(tmp_path)
    try:
        conf = tmp_path / "node-exporter.yaml"
        conf.write_text((ROOT / "conf" / "node-exporter.yaml").read_text()
                        .replace("port: 24224", f"port: {receiver.port}"))
        with _node_exporter() as url:
            env = {"NODE_EXPORTER_URL": url, "PIPELINE_STATE_DIR": str(tmp_path / "state")}
            for _ in range(2):  # the second call has a previous sample to compute rates from
                result = run_pipeline("run", "--once", str(conf), env=env)
                assert result.returncode == 0, result.stderr.decode()
        assert wait_for(lambda: any("node_cpu_seconds_total_per_second" in r for r in receiver.records()))
    finally:
        receiver.stop()
    rates = [r for r in receiver.records() if "node_cpu_seconds_total_per_second" in r]
    assert {r["mode"] for r in rates} >= {"idle", "user"}
    # seconds of CPU per second per cpu and mode: never negative, at most one CPU's worth
    assert all(0 <= r["node_cpu_seconds_total_per_second"] <= 1.05 for r in rates)
