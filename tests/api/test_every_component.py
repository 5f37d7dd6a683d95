"""Every plugin type and every example config through /api/components and `pipeline top`'s
view, against the real api of a running pipeline: every option type has a JSON form."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from api_peers import get_json, serving
from helpers import FIXTURES, ROOT, free_port, run_pipeline

from pipeline.api.client import Client
from pipeline.api.messages import Request
from pipeline.api.server import start_api
from pipeline.cli.top import View
from pipeline.config.graph import load_config
from pipeline.engine.runtime import Runtime
from pipeline.plugin import KINDS, names

EVERY_PLUGIN = FIXTURES / "configs" / "every-plugin.yaml"
CONFS = sorted((ROOT / "conf").glob("*.yaml"))


def test_the_every_plugin_config_uses_every_plugin_type():
    doc = yaml.safe_load(EVERY_PLUGIN.read_text())
    for kind in KINDS:
        used = {c["type"] for c in doc[f"{kind}s"].values()}
        assert set(names(kind)) <= used, f"add a {kind} of each new type to {EVERY_PLUGIN.name}"


def _config(tmp_path: Path, conf: Path) -> Path:
    if conf != EVERY_PLUGIN:
        return conf
    (tmp_path / "logs").mkdir()
    path = tmp_path / "every-plugin.yaml"
    path.write_text(conf.read_text().replace("{tmp}", str(tmp_path)))
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    """Every address an example listens on, on a port of its own; everything it writes in
    tmp_path; peers it polls absent (their polls fail, which the view shows)."""
    return {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path / "home"),
            "RELAY_PORT": str(free_port()), "EXPORTER_PORT": str(free_port()),
            "UWSGI_STATS": f"unix://{tmp_path}/absent.sock", "DOCKER_ENDPOINT": f"unix://{tmp_path}/absent.sock",
            "NGINX_LOGS": str(tmp_path / "nginx"), "APP_STATS_FILE": str(tmp_path / "absent.jsonl")}


@pytest.mark.parametrize("conf", [EVERY_PLUGIN, *CONFS], ids=["every-plugin", *(c.name for c in CONFS)])
def test_components_and_top_show_every_component(conf, tmp_path):
    port = free_port()
    config = _config(tmp_path, conf)
    with serving(port, "run", str(config), "--api", f"127.0.0.1:{port}", env=_env(tmp_path),
                 stdin=subprocess.DEVNULL):
        status, doc = get_json(port, "/api/components")
        assert status == 200, doc
        ids = [c["id"] for c in doc["components"]]
        expected = yaml.safe_load(config.read_text())
        assert set(ids) == {cid for kind in KINDS for cid in (expected.get(f"{kind}s") or {})}
        # what top shows: every component's row, no error line
        view = View(Client(f"127.0.0.1:{port}"))
        view.refresh()
        assert view.error is None
        lines = view.lines(160, 60)
        for cid in ids:
            assert any(line.startswith(cid[:20]) for line in lines[3:]), (cid, lines)


def test_secrets_stay_masked_in_a_struct_list(tmp_path):
    port = free_port()
    with serving(port, "run", str(_config(tmp_path, EVERY_PLUGIN)), "--api", f"127.0.0.1:{port}",
                 env=_env(tmp_path), stdin=subprocess.DEVNULL):
        _, doc = get_json(port, "/api/components")
        by_id = {c["id"]: c for c in doc["components"]}
        assert by_id["out_forward"]["config"]["shared_key"] == "********"
        assert by_id["grep"]["config"]["regexp"][0]["pattern"] == "^5"
        assert by_id["aggregate"]["config"]["metrics"] == {"p99": "p99(n)", "mean": "avg(n)"}
        assert by_id["stdin"]["config"]["format"]["pattern"] == r"^(?P<word>\w+)"


def test_a_failing_page_is_logged_once_a_minute_not_per_request(tmp_path, caplog):
    config = tmp_path / "p.yaml"
    config.write_text("sources: {s: {type: stdin}}\nsinks: {d: {type: discard, inputs: [s]}}\n")
    graph = load_config(str(config))
    port = free_port()

    async def broken(api, req: Request):
        raise RuntimeError("a bug in a page")

    async def scenario() -> list[int]:
        runtime = Runtime(graph)
        api = await start_api(runtime.figures(), graph.settings.api or _api_conf(port))
        api.route("GET", "/broken", broken)
        loop = asyncio.get_running_loop()
        statuses = [await loop.run_in_executor(None, _status, f"http://127.0.0.1:{api.port}/broken")
                    for _ in range(9)]
        await api.stop()
        return statuses

    with caplog.at_level(logging.ERROR, logger="pipeline.api"):
        statuses = asyncio.run(scenario())
    assert statuses == [500] * 9
    lines = [r for r in caplog.records if "a bug in a page" in r.getMessage()]
    assert len(lines) == 1 and not lines[0].exc_info
    assert not lines[0].getMessage().startswith("api:")  # the logger's name says it already


def _api_conf(port: int):
    from types import SimpleNamespace

    return SimpleNamespace(address=f"127.0.0.1:{port}", unhealthy_after=60.0, dashboard=None)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_top_without_a_terminal_says_it_needs_one():
    result = run_pipeline("top", "--api", f"127.0.0.1:{free_port()}", input=b"")
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "terminal" in err and "Traceback" not in err, err
