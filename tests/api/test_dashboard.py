"""The dashboard without a browser: its config checks, /api/series against what the file sink
wrote, the bounds of its store (memory measured), its files in the wheel, and `pipeline plot`.
The page itself is tested in a real browser in test_dashboard_browser.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree

from api_peers import get, get_json, running
from helpers import ROOT, run_pipeline, wait_for

from pipeline.api.series import Store

GEN = """
import json, sys, time
n = int(sys.argv[1])
for i in range(n):
    print(json.dumps({"host": f"h{i}", "load": {"one": round(time.time() % 100 + i, 3)},
                      "mem_bytes": 1048576 * (i + 1), "label": "x"}))
"""


def _gen(tmp_path: Path, series: int = 2) -> str:
    (tmp_path / "gen.py").write_text(GEN)
    return f'["{sys.executable}", "{tmp_path / "gen.py"}", "{series}"]'


def _points(port: int, panel: int) -> int:
    """The fewest points of a panel's series (0 before it has any)."""
    series = get_json(port, f"/api/series?panel={panel}")[1]["series"]
    return min((len(s["t"]) for s in series), default=0)


def test_check_refuses_a_panel_whose_input_is_no_source_or_filter_with_its_line(tmp_path):
    conf = tmp_path / "p.yaml"
    conf.write_text("""\
api:
  dashboard:
    panels:
      - {title: ok, input: gen, field: a}
      - {title: typo, input: gne, field: a}
      - {title: sink, input: out, field: a}
      - {title: no field, input: gen}
sources:
  gen: {type: exec, command: [echo, "{}"]}
sinks:
  out: {type: stdout, inputs: [gen]}
""")
    result = run_pipeline("check", str(conf))
    assert result.returncode == 2
    assert result.stderr.decode().splitlines()[:3] == [
        f"{conf}:5: api.dashboard.panels[1].input: 'gne' is not a source or filter id (did you mean 'gen'?)",
        f"{conf}:6: api.dashboard.panels[2].input: 'out' is a sink, which has no output",
        f"{conf}:7: api.dashboard.panels[3].field: missing required option",
    ]


def test_check_warns_of_a_field_the_input_is_known_not_to_give(tmp_path):
    conf = tmp_path / "p.yaml"
    conf.write_text(Path(ROOT / "conf" / "uwsgi-dashboard.yaml").read_text()
                    .replace("field: requests_rate", "field: request_rate"))
    result = run_pipeline("check", str(conf))
    assert result.returncode == 0
    assert f"{conf}:9: api.dashboard.panels[0].field: warning: 'rates' gives no numeric field " \
           "'request_rate' (did you mean 'requests_rate'?)" in result.stderr.decode()


def test_series_are_the_records_the_pipeline_emitted(tmp_path):
    out = tmp_path / "out.jsonl"
    config = f"""
api:
  address: "{{api}}"
  dashboard:
    unseen_after: 2s
    panels:
      - {{title: Load, input: gen, field: load.one, series: host}}
      - {{title: Memory, input: gen, field: mem_bytes, series: host}}
      - {{title: Typo, input: gen, field: mem_byte}}
      - {{title: Text, input: gen, field: label}}
sources:
  gen: {{type: exec, command: {_gen(tmp_path)}, format: json_lines, interval: 0.5s}}
sinks:
  out: {{type: file, inputs: [gen], path: "{out}", time_key: time, time_format: float, flush_interval: 0.1s}}
"""
    with running(tmp_path, config) as (proc, port):
        assert wait_for(lambda: _points(port, 0) >= 4)
        time.sleep(2)
        status, doc = get_json(port, "/api/series")
        _, recent = get_json(port, "/api/series?panel=1&since=-1.5")
        assert get(port, "/api/series?panel=4")[0] == 404
        assert get(port, "/api/series?since=yesterday")[0] == 400
        assert get(port, "/nope")[0] == 404  # `/` takes only itself
        page = get(port, "/")
    stderr = proc.stderr.read().decode()  # type: ignore[union-attr]
    assert status == 200 and page[0] == 200 and b"/static/dashboard.js" in page[1]
    load, mem, typo, text = doc["panels"]
    assert (load["unit"], mem["unit"]) == ("none", "bytes")  # guessed from the name
    assert [s["name"] for s in load["series"]] == ["h0", "h1"]
    assert typo["series"] == [] and text["series"] == []
    records = [json.loads(line) for line in out.read_text().splitlines()]
    for panel, path in ((load, ("load", "one")), (mem, ("mem_bytes",))):
        for s in panel["series"]:
            def value(r, path=path):
                for p in path:
                    r = r[p]
                return r
            emitted = sorted((r["time"], value(r)) for r in records if r["host"] == s["name"])
            times = [round(t, 3) for t, _ in emitted]
            for t, v in zip(s["t"], s["v"]):
                # a point is an emitted record's time, with the last value of its second
                assert t in times
                assert v == [e[1] for e in emitted if int(e[0]) == int(t)][-1]
            assert len(s["t"]) >= 4 and len(emitted) > len(s["t"])  # two records a step
    assert 1 <= len(recent["series"][0]["t"]) <= 4
    assert all(t >= recent["now"] - 1.5 for t in recent["series"][0]["t"])
    # the warning names the panels whose field no record had, and only those
    warned = [line for line in stderr.splitlines() if "no record from" in line]
    assert len(warned) == 2 and "panel 2 (Typo)" in warned[0] and "panel 3 (Text)" in warned[1], stderr


def test_past_max_series_points_are_dropped_counted_and_said_once(tmp_path):
    config = f"""
api:
  address: "{{api}}"
  dashboard:
    max_series: 3
    panels: [{{title: Memory, input: gen, field: mem_bytes, series: host}}]
sources:
  gen: {{type: exec, command: {_gen(tmp_path, 5)}, format: json_lines, interval: 0.2s}}
sinks:
  out: {{type: discard, inputs: [gen]}}
"""
    with running(tmp_path, config) as (proc, port):
        assert wait_for(lambda: get_json(port, "/api/series?panel=0")[1]["dropped_points"] >= 6)
        _, doc = get_json(port, "/api/series?panel=0")
    assert [s["name"] for s in doc["series"]] == ["h0", "h1", "h2"]
    stderr = proc.stderr.read().decode()  # type: ignore[union-attr]
    assert stderr.count("more than max_series 3 series") == 1, stderr


def test_what_a_filter_emits_on_its_ticks_is_charted(tmp_path):
    # the aggregate filter emits at the end of each window, from a tick, not from process()
    config = f"""
api:
  address: "{{api}}"
  dashboard:
    panels: [{{title: Events, input: per_second, field: n}}]
sources:
  gen: {{type: exec, command: {_gen(tmp_path)}, format: json_lines, interval: 0.2s}}
filters:
  per_second: {{type: aggregate, inputs: [gen], window: 1s, metrics: {{n: count()}}}}
sinks:
  out: {{type: discard, inputs: [per_second]}}
"""
    with running(tmp_path, config) as (_, port):
        assert wait_for(lambda: _points(port, 0) >= 2)
        _, doc = get_json(port, "/api/series?panel=0")
    assert doc["series"][0]["name"] == "n" and all(v >= 2 for v in doc["series"][0]["v"])


def _store(series: int, history: float = 3600.0, max_series: int = 50) -> Store:
    panel = SimpleNamespace(title="t", input="gen", field="v", series="s", unit=None)
    return Store(SimpleNamespace(history=history, max_series=max_series, panels=[panel]))


def test_100_series_of_an_hour_at_1s_cost_less_than_30_MiB():
    start = 1_800_000_000.0
    names = [f"container-{i}" for i in range(100)]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        store = _store(100, max_series=100)
        for second in range(3600 + 600):  # ten minutes past the hour: the oldest are let go
            t = int((start + second) * 1e9)
            store.offer("gen", [("tag", t, {"s": n, "v": second * 1.5}) for n in names])
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    series = store.panels[0].series
    assert len(series) == 100 and all(len(s.times) == 3601 for s in series.values())
    print(f"\n100 series x 1 h at 1 s: {used / 2**20:.1f} MiB")
    assert used <= 30 * 2**20, f"{used / 2**20:.1f} MiB"


def test_a_fast_series_keeps_one_point_a_step_with_the_latest_value():
    store = _store(1, history=60)
    start = 1_800_000_000
    for i in range(10 * 120):  # ten a second for two minutes
        store.offer("gen", [("tag", int((start + i / 10) * 1e9), {"s": "a", "v": i})])
    s = store.panels[0].series["a"]
    assert len(s.times) == 61 and s.times[-1] == start + 119 and s.values[-1] == 1199
    assert list(s.times) == [float(start + 59 + i) for i in range(61)]


def test_the_dashboards_files_are_in_the_package(tmp_path):
    # what setuptools copies into a wheel or an install: pyproject.toml's package-data
    # (egg_info too, so that nothing is written into the checkout)
    built = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "egg_info",
                            "--egg-base", str(tmp_path), "build_py", "--build-lib", str(tmp_path)], cwd=ROOT, capture_output=True, timeout=300)
    assert built.returncode == 0, built.stderr.decode()
    shipped = {p.name for p in (ROOT / "pipeline" / "api" / "static").iterdir()}
    assert shipped >= {"index.html", "dashboard.js", "dashboard.css"}
    assert {p.name for p in (tmp_path / "pipeline" / "api" / "static").iterdir()} == shipped


def _write_log(tmp_path: Path) -> Path:
    out = tmp_path / "log.jsonl"
    lines = []
    for i in range(30):
        for name, base in (("web", 200), ("db", 900)):
            lines.append(json.dumps({"time": 1_800_000_000 + i * 10, "container_name": name,
                                     "memory_usage": (base + i) * 2**20}))
    out.write_text("\n".join(lines) + "\nnot json\n" + json.dumps({"container_name": "web"}) + "\n")
    return out


def test_plot_draws_a_line_per_series_from_the_file_sinks_records(tmp_path):
    log = _write_log(tmp_path)
    chart = tmp_path / "chart.svg"
    result = run_pipeline("plot", str(log), "--field", "memory_usage", "--series", "container_name",
                          "--out", str(chart))
    assert result.returncode == 0, result.stderr.decode()
    stderr = result.stderr.decode()
    assert "1 lines that are not JSON left out" in stderr and "1 records without a number" in stderr
    svg = ElementTree.parse(chart).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    lines = {p.get("data-series"): p for p in svg.iter(f"{ns}path") if p.get("class") == "line"}
    assert sorted(lines) == ["db", "web"]
    assert [lines[n].get("data-points") for n in ("db", "web")] == ["30", "30"]
    assert float(lines["db"].get("data-last")) == 929 * 2**20
    ticks = [t.text for t in svg.iter(f"{ns}text") if t.get("class") == "ytick"]
    assert ticks[0] == "0 MiB" and ticks[-1] == "1000 MiB", ticks
    legend = "".join(svg.itertext())
    assert "db 929 MiB" in legend and "web 229 MiB" in legend


def test_plot_refuses_png_and_says_why(tmp_path):
    log = _write_log(tmp_path)
    result = run_pipeline("plot", str(log), "--field", "memory_usage", "--out", str(tmp_path / "c.png"))
    assert result.returncode == 2 and "only SVG is written" in result.stderr.decode()
    assert not (tmp_path / "c.png").exists()


def test_plot_of_a_field_no_record_has_says_so(tmp_path):
    result = run_pipeline("plot", str(_write_log(tmp_path)), "--field", "memory_usag",
                          "--out", str(tmp_path / "c.svg"))
    assert result.returncode == 1 and "nothing to chart" in result.stderr.decode()
