"""The dashboard in a real browser: Debian's chromium (.ci/apt-packages) driven by Playwright,
on the two example configs, for a real uWSGI with two workers and podman's Docker API with
two containers. The page must load without console errors, draw one chart per panel with a
line per worker or container, show the values the pipeline wrote with its file sink, and
take a new point within 3 seconds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from api_peers import get_json, serving
from helpers import ROOT, free_port

from pipeline.metrics.rates import parse_rfc3339_ns

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs .ci/apt-packages")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM)
        except Exception as e:  # a sandbox that cannot start a browser at all
            pytest.skip(f"chromium cannot run here: {e}")
        yield browser
        browser.close()


@contextmanager
def dashboard(tmp_path: Path, example: str, env: dict[str, str]):
    """Run conf/EXAMPLE with its api on a free port and its file sink in tmp_path/log;
    yields (port, log directory, process); stopped at the end if still running."""
    port = free_port()
    logs = tmp_path / "log"
    with serving(port, "run", str(ROOT / "conf" / example), env={
            "PIPELINE_API": f"127.0.0.1:{port}", "OUT_DIR": str(logs),
            "PIPELINE_STATE_DIR": str(tmp_path / "state"), **env}) as proc:
        yield port, logs, proc


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, and wait until the file sink has written everything out."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.stderr.read().decode()  # type: ignore[union-attr]


def _page_model(page) -> list[dict]:
    # what the page holds and draws: its own state (dashboard.js) and the legend it shows
    return page.evaluate("""() => state.panels.map(p => ({
        title: p.meta.title, field: p.meta.field, series_field: p.meta.series_field,
        series: Object.fromEntries([...p.series].map(([n, s]) => [n, {t: s.t, v: s.v}])),
        lines: [...p.svg.querySelectorAll("path.line")].map(l => l.dataset.series),
        legend: [...p.legend.querySelectorAll("li")].map(li => [li.dataset.series, li.textContent]),
    }))""")


def _value(record: dict, path: str):
    for part in path.split("."):
        if not isinstance(record, dict) or part not in record:
            return None
        record = record[part]
    return record


def _open(browser, port: int, panels: int, ready):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    # no CDN, nothing from elsewhere: every file the page loads is the pipeline's
    origin = f"http://127.0.0.1:{port}/"
    page.on("request", lambda r: None if r.url.startswith((origin, "data:")) else problems.append(
        f"request beyond the pipeline: {r.url}"))
    page.goto(f"http://127.0.0.1:{port}/")
    assert page.locator("section.panel").count() == panels
    assert page.locator("section.panel svg").count() == panels
    page.wait_for_function(ready, timeout=60_000)
    return page, problems


def _check_against_the_log(page, logs: Path, pattern: str, stop) -> list[dict]:
    """The page's points are records the file sink wrote: each point is a record's time
    (in the second the file says) with the value of that series' last record of that second."""
    model = _page_model(page)
    stop()
    records = [json.loads(line) for f in sorted(logs.glob(pattern)) for line in f.read_text().splitlines()]
    assert records
    for panel in model:
        for name, s in panel["series"].items():
            key = panel["series_field"]
            mine = [r for r in records if key is None or str(_value(r, key)) == name]
            by_second: dict[int, object] = {}
            for r in mine:
                v = _value(r, panel["field"])
                if isinstance(v, (int, float)):
                    by_second[parse_rfc3339_ns(r["time"]) // 1_000_000_000] = v
            assert s["t"], (panel["title"], name)
            for t, v in zip(s["t"], s["v"]):
                assert by_second.get(int(t)) == v, (panel["title"], name, t, v)
        # a line and a legend entry for each series, the legend showing the last value
        assert sorted(panel["lines"]) == sorted(panel["series"]) == [n for n, _ in panel["legend"]]
    return model


def _a_new_point_within_3s(page) -> None:
    before = page.evaluate("Math.max(...state.panels.flatMap(p => [...p.series.values()].map(s => s.t.at(-1))))")
    page.wait_for_function(f"""Math.max(...state.panels.flatMap(p =>
        [...p.series.values()].map(s => s.t.at(-1)))) > {before}""", timeout=3000)


def _pick_each_range(page) -> None:
    for label, seconds in (("1h", 3600), ("15m", 900), ("5m", 300)):
        page.get_by_role("button", name=label, exact=True).click()
        spans = page.eval_on_selector_all("section.panel svg", "ss => ss.map(s => s.dataset.t1 - s.dataset.t0)")
        assert spans == [seconds] * len(spans), (label, spans)
        assert page.locator("#ranges button.on").inner_text() == label


def _hover_and_shoot(page, tmp_path: Path, name: str) -> str:
    box = page.locator("section.panel svg").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] - 14, box["y"] + box["height"] / 2)  # now, at the right
    tooltip = page.locator("#tooltip")
    tooltip.wait_for(state="visible", timeout=3000)
    text = tooltip.inner_text()
    page.screenshot(path=str(tmp_path / name), full_page=True)
    shutil.copy(tmp_path / name, f"/tmp/{name}")
    return text


def test_uwsgi_dashboard_in_a_browser(browser, tmp_path):
    from sources.test_uwsgi import Uwsgi

    server = Uwsgi(tmp_path, str(tmp_path / "stats.sock"))
    done = threading.Event()

    def load() -> None:
        while not done.is_set():
            server.load(4)
            done.wait(0.2)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        with dashboard(tmp_path, "uwsgi-dashboard.yaml", {"UWSGI_STATS": f"unix://{tmp_path / 'stats.sock'}"}) \
                as (port, logs, proc):
            # requests/s needs two samples; then each per-worker panel has both workers
            page, problems = _open(browser, port, 4, """() => state.panels.length === 4 &&
                state.panels.slice(0, 3).every(p => p.series.size === 2) && state.panels[3].series.size === 1""")
            _a_new_point_within_3s(page)
            _pick_each_range(page)
            tooltip = _hover_and_shoot(page, tmp_path, "dashboard-uwsgi.png")
            model = _check_against_the_log(page, logs, "uwsgi.*.jsonl", lambda: _stop(proc))
    finally:
        done.set()
        loader.join()
        server.stop()
    assert [p["title"] for p in model] == ["Requests", "Average response time (µs)", "Memory (RSS)", "Listen queue"]
    assert [sorted(p["series"]) for p in model[:3]] == [["1", "2"]] * 3
    assert list(model[3]["series"]) == ["listen_queue"]
    assert any(v > 0 for s in model[0]["series"].values() for v in s["v"]), "the load gave no requests/s"
    legend = dict(model[2]["legend"])
    assert all(text.endswith("MiB") or text.endswith("KiB") for text in legend.values()), legend
    assert "/s" in dict(model[0]["legend"])["1"]
    assert tooltip.count(":") >= 2 + 2  # the time, and a line per worker
    assert not problems, problems


def test_docker_dashboard_in_a_browser(browser, podman, tmp_path):
    with dashboard(tmp_path, "docker-dashboard.yaml", {"DOCKER_ENDPOINT": f"unix://{podman.socket}",
                                                       "DOCKER_INTERVAL": "1s"}) as (port, logs, proc):
        # CPU % needs two samples of a container (podman never fills precpu_stats)
        page, problems = _open(browser, port, 6, """() => state.panels.length === 6 &&
            state.panels.slice(0, 2).every(p => p.series.size === 2)""")
        _a_new_point_within_3s(page)
        _, api = get_json(port, "/api/series")
        _pick_each_range(page)
        # a few more seconds, for a screenshot with lines
        page.wait_for_function("state.panels[0].series.get('peer-busy').t.length >= 6", timeout=30_000)
        tooltip = _hover_and_shoot(page, tmp_path, "dashboard.png")
        model = _check_against_the_log(page, logs, "docker.*.jsonl", lambda: _stop(proc))
    assert [p["title"] for p in model] == ["CPU", "Memory", "Network received", "Network sent",
                                           "Block IO read", "Block IO written"]
    for panel in model[:2]:
        assert sorted(panel["series"]) == ["peer-busy", "peer-idle"], panel["title"]
    # the other panels have a line for each container whose records had the field
    for panel, doc in zip(model, api["panels"]):
        assert set(panel["series"]) >= {s["name"] for s in doc["series"]}
    cpu = dict(model[0]["legend"])
    assert cpu["peer-busy"].endswith("%") and cpu["peer-idle"].endswith("%")
    busy = model[0]["series"]["peer-busy"]["v"]
    idle = model[0]["series"]["peer-idle"]["v"]
    assert max(busy) > max(idle), (busy, idle)
    assert "peer-busy" in tooltip and "peer-idle" in tooltip and "%" in tooltip
    assert not problems, problems
