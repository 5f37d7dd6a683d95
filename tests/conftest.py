"""Fixtures every test gets."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _own_state_home(tmp_path_factory, monkeypatch):
    # state_dir defaults to $XDG_STATE_HOME/pipeline: without this, pipelines run by tests
    # would keep rate state in the user's home, and one test's state would give the next rates
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state-home")))
