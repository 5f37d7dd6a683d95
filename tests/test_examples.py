"""Every example config (conf/*.yaml and the complete configs in README.md) passes `pipeline check`."""

from __future__ import annotations

import re

import pytest
from helpers import ROOT, run_pipeline

CONFS = sorted((ROOT / "conf").glob("*.yaml"))


@pytest.mark.parametrize("conf", CONFS, ids=[c.name for c in CONFS])
def test_conf_example_is_valid(conf):
    result = run_pipeline("check", str(conf))
    assert result.returncode == 0, result.stderr.decode()
    assert b": ok" in result.stdout


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
