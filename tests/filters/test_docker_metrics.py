"""Filter docker_metrics against recorded moby and podman stats, checked against the numbers
`docker stats` prints for them (worked out by hand below from the Docker CLI's formulas)."""

from __future__ import annotations

import json

import pytest
from helpers import FIXTURES, make_plugin

PUBLIC = FIXTURES / "docker/public"


def load(path):
    return json.loads(path.read_bytes())


def run(f, *docs):
    return [r for _, _, r in f.process([("docker", 1, d) for d in docs])]


@pytest.mark.parametrize("name, cpu, mem, mem_pct, rx, tx, read, write, pids", [
    # precpu filled: (190-100)/(200-100) x 6 cpus x 100; v1 subtracts total_inactive_file (300000)
    ("ha-supervisor/container_stats_cgroupv1.json", 540.0, 59_700_000, 1.4925, 686762770, 488473500,
     555053056, 9285632, 87),
    # v2: online_cpus 6, no percpu_usage; inactive_file; lowercase blkio ops
    ("ha-supervisor/container_stats_cgroupv2.json", 540.0, 59_700_000, 1.4925, 1243260, 5274, 0, 413696, 29),
    # the API's own example: 121359 ns of 729814450000000 system ns x 4 cpus: 0.00% as the CLI prints it
    ("moby-swagger/stats-example-api-v1.44.json", 0.0000665, 6537216, 9.7412, 5338 + 4641, 648 + 690, 0, 0, 3),
])
def test_what_docker_stats_prints(name, cpu, mem, mem_pct, rx, tx, read, write, pids):
    [r] = run(make_plugin("filter", "docker_metrics"), load(PUBLIC / name))
    assert r["cpu_percent"] == pytest.approx(cpu, abs=0.05)  # to 0.1 percentage points
    assert r["memory_usage"] == mem and r["memory_percent"] == pytest.approx(mem_pct, abs=0.05)
    assert (r["net_rx_bytes"], r["net_tx_bytes"], r["blkio_read_bytes"], r["blkio_write_bytes"]) == (rx, tx, read, write)
    assert r["pids"] == pids


def test_one_shot_samples_use_the_previous_sample_and_rates_use_read():
    # podman (like one-shot stats) never fills precpu_stats: CPU% comes from the previous sample
    f = make_plugin("filter", "docker_metrics")
    docs = [load(FIXTURES / f"docker/podman/body/stats-fx-worker-{i:03d}.json") for i in range(3)]
    for d in docs:
        d["container_id"] = d["Id"]
    first, second, third = run(f, *docs)
    assert "cpu_percent" not in first and "net_rx_bytes_rate" not in first
    (c0, s0), (c1, s1) = [(d["cpu_stats"]["cpu_usage"]["total_usage"], d["cpu_stats"]["system_cpu_usage"])
                          for d in docs[:2]]
    online = docs[1]["cpu_stats"]["online_cpus"]
    assert second["cpu_percent"] == pytest.approx((c1 - c0) / (s1 - s0) * online * 100, abs=0.05)
    from pipeline.metrics.rates import parse_rfc3339_ns

    dt = (parse_rfc3339_ns(docs[2]["read"]) - parse_rfc3339_ns(docs[1]["read"])) / 1e9
    assert third["net_rx_bytes_rate"] == pytest.approx((third["net_rx_bytes"] - second["net_rx_bytes"]) / dt)
    assert third["blkio_write_bytes_rate"] >= 0


def test_restart_gives_no_negative_numbers_and_state_survives(tmp_path):
    restart = sorted((FIXTURES / "docker/podman/restart").glob("*.json"))
    docs = [load(p) for p in restart]
    for d in docs:
        d["container_id"] = d["Id"]
    f = make_plugin("filter", "docker_metrics", state_dir=tmp_path)
    rows = run(f, *docs[:3])
    f.ctx.save_state(f.save_state())
    again = make_plugin("filter", "docker_metrics", state_dir=tmp_path)  # the next --once run
    again.load_state(again.ctx.load_state())
    rows += run(again, *docs[3:])
    assert "cpu_percent" in rows[3] or rows[3]["cpu_stats"]["cpu_usage"]["total_usage"] < \
        rows[2]["cpu_stats"]["cpu_usage"]["total_usage"]
    assert all(v >= 0 for r in rows for k, v in r.items() if k.endswith(("_rate", "_percent")))
    assert "net_rx_bytes_rate" in rows[-1]


def test_stopped_container_and_big_integers():
    f = make_plugin("filter", "docker_metrics")
    stopped = {"container_id": "c", "read": "0001-01-01T00:00:00Z", "memory_stats": {}, "cpu_stats": {}}
    assert run(f, stopped) == [stopped] and f.ctx.counters["not_running"] == 1
    raw = (PUBLIC / "ha-supervisor/container_stats_cgroupv1.json").read_text()
    doc = json.loads(raw)
    doc["memory_stats"]["stats"]["hierarchical_memory_limit"] = 9223372036854771712
    [r] = run(f, doc)
    assert r["memory_stats"]["stats"]["hierarchical_memory_limit"] == 9223372036854771712
