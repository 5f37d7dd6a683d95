"""Every example config (conf/*.yaml and the complete configs in README.md) passes `pipeline check`,
and run as it comes writes only under the user's state home."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, run_pipeline

from pipeline.config.options import Errors
from pipeline.config.yaml_loader import parse_yaml

CONFS = sorted((ROOT / "conf").glob("*.yaml"))


@pytest.mark.parametrize("conf", CONFS, ids=[c.name for c in CONFS])
def test_conf_example_is_valid(conf):
    result = run_pipeline("check", str(conf))
    assert result.returncode == 0, result.stderr.decode()
    assert b": ok" in result.stdout


def _absolute_paths(value) -> list[str]:
    if isinstance(value, dict):
        return [p for v in value.values() for p in _absolute_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in _absolute_paths(v)]
    return [value] if isinstance(value, str) and value.startswith("/") else []


@pytest.mark.parametrize("conf", CONFS, ids=[c.name for c in CONFS])
@pytest.mark.parametrize("xdg", [False, True], ids=["home", "xdg_state_home"])
def test_conf_example_writes_only_under_the_state_home(conf, xdg, tmp_path):
    # with nothing but HOME (and XDG_STATE_HOME) set, everything an example writes is in the
    # user's state home
    home = tmp_path / "home"
    env = {"HOME": str(home), **({"XDG_STATE_HOME": str(tmp_path / "xdg")} if xdg else {})}
    errors = Errors(file=str(conf))
    doc = parse_yaml(conf.read_text(), errors, env)
    assert not errors, errors.lines()
    state_home = tmp_path / "xdg" / "pipeline" if xdg else home / ".local" / "state" / "pipeline"
    # where it writes: state, what its sinks write (files, buffers), tail's positions; what its
    # sources read (log files, sockets) may be anywhere
    written = _absolute_paths([doc.get("state_dir"), doc.get("sinks"),
                               [s.get("pos_file") for s in (doc.get("sources") or {}).values()]])
    outside = [p for p in written if not Path(p).is_relative_to(state_home)]
    assert not outside, f"{conf.name} writes outside {state_home}: {outside}"


def test_examples_write_into_the_state_home(tmp_path):
    # a real run: rate state (uwsgi-in_exec, its uWSGI absent), the archive and the rejects file
    # (exec-to-file, a good line and a bad one) land under XDG_STATE_HOME, not /var/lib or /tmp
    stats = tmp_path / "input" / "stats.jsonl"
    stats.parent.mkdir()
    stats.write_text('{"a": {"b": 1}}\nnot json\n')
    env = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_STATE_DIR", "OUT_DIR", "PIPELINE_BUFFER")}
    env.update(HOME=str(tmp_path / "home"), XDG_STATE_HOME=str(tmp_path / "xdg"),
               UWSGI_STATS=f"unix://{tmp_path}/absent.sock", APP_STATS_FILE=str(stats), PYTHONPATH=str(ROOT))
    for name in ("uwsgi-in_exec.yaml", "exec-to-file.yaml"):
        subprocess.run([sys.executable, "-m", "pipeline", "run", "--once", str(ROOT / "conf" / name)],
                       env=env, cwd=tmp_path / "input", capture_output=True, timeout=60)
    written = sorted(re.sub(r"\d{8}", "DATE", str(p.relative_to(tmp_path)))
                     for p in tmp_path.rglob("*") if p.is_file() and p != stats)
    assert written == ["xdg/pipeline/log/app.stats.DATE.jsonl", "xdg/pipeline/log/errors.jsonl",
                       "xdg/pipeline/rates.state"]


def _readme_configs() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [b for b in blocks if re.search(r"^sources:", b, re.M) and re.search(r"^sinks:", b, re.M)]


def test_readme_has_complete_configs():
    assert len(_readme_configs()) >= 2


@pytest.mark.parametrize("index", range(len(_readme_configs())))
def test_readme_config_is_valid(index, tmp_path):
    conf = tmp_path / "readme.yaml"
    conf.write_text(_readme_configs()[index])
    result = run_pipeline("check", str(conf))
    assert result.returncode == 0, result.stderr.decode()


#: keys whose values say where a peer is or where to listen: an example takes each from the
#: environment, with a default, so it runs as it comes and is pointed elsewhere without an edit
ADDRESS_KEYS = {"address", "endpoint", "url", "bind", "port", "brokers"}
_PLACEHOLDER = re.compile(r"^\$\{(\w+):-(.*)\}$")


def _addresses(value, key=None, keys=ADDRESS_KEYS):
    if isinstance(value, dict):
        # a server's host is an address; a record's `host` field (record: set:) is not
        inner = keys | {"host"} if key == "servers" else keys
        return [a for k, v in value.items() for a in _addresses(v, k, inner)]
    if isinstance(value, list):
        return [a for v in value for a in _addresses(v, key, keys)]
    return [(key, value)] if key in keys else []


def test_examples_take_every_address_from_the_environment_with_one_default_per_variable():
    import yaml

    texts = {c.name: c.read_text() for c in CONFS}
    texts.update({f"README.md config {i}": t for i, t in enumerate(_readme_configs())})
    defaults: dict[str, set[str]] = {}
    for name, text in texts.items():
        doc = yaml.safe_load(text)
        for section in ("sources", "filters", "sinks"):
            for cid, comp in (doc.get(section) or {}).items():
                for key, value in _addresses(comp):
                    m = _PLACEHOLDER.match(str(value))
                    assert m, f"{name}: {section}.{cid}.{key}: {value!r} is not ${{VAR:-default}}"
                    defaults.setdefault(m.group(1), set()).add(m.group(2))
        api = (doc.get("api") or {}).get("address")
        if api is not None:
            m = _PLACEHOLDER.match(api)
            assert m, f"{name}: api.address: {api!r}"
            defaults.setdefault(m.group(1), set()).add(m.group(2))
    differing = {var: sorted(values) for var, values in defaults.items() if len(values) > 1}
    assert not differing, f"one variable, several defaults across the examples: {differing}"
