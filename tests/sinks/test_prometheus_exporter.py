import asyncio
import math
import subprocess
import time

from helpers import free_port, make_plugin, port_open, start_pipeline, wait_for

from pipeline.prometheus_text import parse


async def _scrape(port: int, **options):
    src = make_plugin("source", "prometheus", url=f"http://127.0.0.1:{port}/metrics", **options)
    await src.start()
    try:
        batch = await src.poll()
        assert src.ctx.counters["errors"] == 0
        return {(r["name"], tuple(sorted(r["labels"].items()))): (r["value"], r["type"]) for _, _, r in batch}
    finally:
        await src.stop()


def test_latest_values_labels_and_types_round_trip():
    async def main():
        sink = make_plugin("sink", "prometheus_exporter", port=0, namespace="app",
                           labels=["container_name", "worker.id"], tag_label="tag",
                           counters=["requests"], fields=["cpu_percent", "requests", "mem.*"])
        await sink.start()
        try:
            await sink.write([
                ("docker.web", 0, {"container_name": "web", "worker": {"id": 1}, "cpu_percent": 12.5,
                                   "requests": 10, "mem": {"rss": 1024}, "name": "x", "ignored": 3}),
                ("docker.db", 0, {"container_name": 'd"b\\1\n', "cpu_percent": math.nan, "requests": 1}),
                ("docker.web", 0, {"container_name": "web", "worker": {"id": 1}, "cpu_percent": 20.0,
                                   "requests": 15, "mem": {"rss": 2048}}),
            ])
            return await _scrape(sink.port)
        finally:
            await sink.stop()
    got = asyncio.run(main())
    web = (("container_name", "web"), ("tag", "docker.web"), ("worker_id", "1"))
    db = (("container_name", 'd"b\\1\n'), ("tag", "docker.db"))
    assert got[("app_cpu_percent", web)] == (20.0, "gauge")
    assert got[("app_requests", web)] == (15.0, "counter")
    assert got[("app_mem_rss", web)] == (2048.0, "gauge")
    assert got[("app_requests", db)] == (1.0, "counter")
    assert math.isnan(got[("app_cpu_percent", db)][0])
    assert len(got) == 5  # `ignored` is not in fields, strings and labels are not metrics


def test_expire_drops_stale_series_keeps_fresh_ones():
    async def main():
        sink = make_plugin("sink", "prometheus_exporter", port=0, labels=["w"], expire="300ms")
        await sink.start()
        try:
            await sink.write([("t", 0, {"w": "gone", "v": 1}), ("t", 0, {"w": "kept", "v": 2})])
            first = await _scrape(sink.port)
            deadline = time.monotonic() + 5
            while True:
                await sink.write([("t", 0, {"w": "kept", "v": 3})])
                now = await _scrape(sink.port)
                if ("v", (("w", "gone"),)) not in now:
                    return first, now
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        finally:
            await sink.stop()
    first, now = asyncio.run(main())
    assert set(first) == {("v", (("w", "gone"),)), ("v", (("w", "kept"),))}
    assert now == {("v", (("w", "kept"),)): (3.0, "gauge")}


def test_render_is_valid_exposition():
    sink = make_plugin("sink", "prometheus_exporter", port=0, namespace="9lives")
    asyncio.run(sink.write([("t", 0, {"a-b": math.inf, "c": -math.inf, "ok": True})]))
    exp = parse(sink.render())
    assert not exp.errors
    assert {(s.name, s.value, s.type) for s in exp.samples} == {
        ("_9lives_a_b", math.inf, "gauge"), ("_9lives_c", -math.inf, "gauge")}


def test_pipeline_run_serves_what_stdin_sends(tmp_path):
    port = free_port()
    conf = tmp_path / "exporter.yaml"
    conf.write_text("sources:\n  in: {type: stdin, tag: uwsgi.app}\n"
                    f"sinks:\n  prom: {{type: prometheus_exporter, inputs: [in], port: {port}, labels: [id],"
                    " namespace: uwsgi, counters: [requests]}\n")
    proc = start_pipeline("run", str(conf), stdin=subprocess.PIPE)
    try:
        proc.stdin.write(b'{"id": 1, "requests": 10, "avg_rt": 1500}\n{"id": 2, "requests": 7}\n')
        proc.stdin.flush()
        got: dict = {}

        def scraped() -> bool:
            nonlocal got
            got = asyncio.run(_scrape(port)) if port_open(port) else {}
            return len(got) == 3
        assert wait_for(scraped, timeout=15), (got, proc.poll())
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    assert got == {("uwsgi_requests", (("id", "1"),)): (10.0, "counter"),
                   ("uwsgi_avg_rt", (("id", "1"),)): (1500.0, "gauge"),
                   ("uwsgi_requests", (("id", "2"),)): (7.0, "counter")}
