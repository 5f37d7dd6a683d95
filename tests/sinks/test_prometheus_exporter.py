"""Sink prometheus_exporter, scraped and parsed by the prometheus source."""

from __future__ import annotations

import asyncio
import math
from urllib.request import urlopen

from helpers import make_plugin, promtool

from pipeline.codecs import prometheus_text


def test_latest_values_labels_types_and_expiry():
    async def main():
        sink = make_plugin("sink", "prometheus_exporter", port=0, prefix="docker_", labels=["container_name"],
                           counters=["*_total"], expire=0.5, fields=["cpu_percent", "net_*", "nan"])
        await sink.start()
        await sink.write([("t", 1, {"container_name": "web", "cpu_percent": 12.5, "net_rx_total": 100,
                                    "image": "nginx", "nan": math.nan}),
                          ("t", 1, {"container_name": 'we"ird', "cpu_percent": 1})])
        await sink.write([("t", 2, {"container_name": "web", "cpu_percent": 50.0, "net_rx_total": 300})])
        scrape = make_plugin("source", "prometheus", url=f"http://127.0.0.1:{sink.port}/metrics")
        first = [r for _, _, r in await scrape.poll()]
        await asyncio.sleep(0.6)
        await sink.write([("t", 3, {"container_name": "db", "cpu_percent": 3.0})])
        second = [r for _, _, r in await scrape.poll()]
        await sink.stop()
        return first, second

    first, second = asyncio.run(main())
    by = {(r["name"], r["labels"].get("container_name")): r for r in first}
    assert by[("docker_cpu_percent", "web")]["value"] == 50.0 and by[("docker_cpu_percent", "web")]["type"] == "gauge"
    assert by[("docker_net_rx_total", "web")] == {"name": "docker_net_rx_total", "labels": {"container_name": "web"},
                                                  "value": 300.0, "type": "counter"}
    assert by[("docker_cpu_percent", 'we"ird')]["value"] == 1.0
    assert math.isnan(by[("docker_nan", "web")]["value"])
    assert ("docker_image", "web") not in by  # strings are not metrics
    # after `expire`, only what came since is left
    assert [(r["name"], r["labels"]) for r in second] == [("docker_cpu_percent", {"container_name": "db"})]


def test_promtool_accepts_the_page_and_help_names_field_and_component():
    async def main():
        sink = make_plugin("sink", "prometheus_exporter", id="exporter", inputs=["workers", "host"], port=0,
                           prefix="uwsgi_", labels=["worker_id"], counters=["requests"])
        await sink.start()
        await sink.write([("t", 1, {"worker_id": 1, "requests": 10, "avg_rt": 1.5, "odd\\field\n": 2}),
                          ("t", 1, {"worker_id": 2, "requests": 7, "avg_rt": 0.5})])
        page = await asyncio.to_thread(lambda: urlopen(f"http://127.0.0.1:{sink.port}/metrics", timeout=5).read())
        await sink.stop()
        return page

    page = asyncio.run(main())
    check = promtool("check", "metrics", input=page)
    assert check.returncode == 0 and check.stdout + check.stderr == b"", (check.stdout + check.stderr).decode()
    samples, helps = prometheus_text.parse(page.decode())
    assert {(s.name, s.type) for s in samples if s.labels == {"worker_id": "2"}} == {
        ("uwsgi_requests_total", "counter"), ("uwsgi_avg_rt", "gauge")}
    assert helps["uwsgi_avg_rt"] == "field avg_rt of the events from workers, host (sink exporter)"
    assert helps["uwsgi_odd_field_"] == "field odd\\field\n of the events from workers, host (sink exporter)"


def test_label_fields_that_are_not_label_names_become_valid_ones():
    async def main():
        sink = make_plugin("sink", "prometheus_exporter", port=0, labels=["worker-id", "2nd", "__name__"])
        await sink.start()
        await sink.write([("t", 1, {"worker-id": 1, "2nd": "b", "__name__": "x", "requests": 10})])
        page = await asyncio.to_thread(lambda: urlopen(f"http://127.0.0.1:{sink.port}/metrics", timeout=5).read())
        await sink.stop()
        return page

    page = asyncio.run(main())
    check = promtool("check", "metrics", input=page)
    assert check.returncode == 0, (check.stdout + check.stderr).decode()
    samples, _ = prometheus_text.parse(page.decode())
    assert [(s.name, s.labels) for s in samples] == [("requests", {"worker_id": "1", "_2nd": "b", "_name__": "x"})]
