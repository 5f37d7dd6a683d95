"""The tail source's positions file (pipeline/tail/positions.py) damaged between two runs: a bad
entry is dropped with a warning and the rest resume; a file found empty or damaged throughout
falls back to the positions before it, rather than reading every file again from its start."""

from __future__ import annotations

import json

import pytest
from helpers import run_pipeline


def _setup(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("a", "b"):
        (logs / f"{name}.log").write_text("".join(f"{name} old {i}\n" for i in range(50)))
    conf = tmp_path / "c.yaml"
    out = tmp_path / "out.jsonl"
    conf.write_text(f"state_dir: {tmp_path / 'state'}\n"
                    f"sources:\n  t: {{type: tail, path: '{logs}/*.log', read_from_head: true}}\n"
                    f"sinks:\n  out: {{type: file, inputs: [t], path: '{out}', time_key: '', tag_key: ''}}\n")
    return logs, conf, out, tmp_path / "state" / "t.positions"


def _run(conf, out) -> tuple[list[str], str]:
    if out.exists():
        out.unlink()
    done = run_pipeline("run", "--once", str(conf), timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    rows = [json.loads(line)["message"] for line in out.read_text().splitlines()] if out.exists() else []
    return rows, done.stderr.decode()


def _grow(logs, n: int = 1):
    for name in ("a", "b"):
        with open(logs / f"{name}.log", "a") as f:
            f.write(f"{name} new {n}\n")


@pytest.mark.parametrize("bad", ["Infinity", "1e400", "[" * 100_000])
def test_a_damaged_entry_is_dropped_with_a_warning_and_the_others_resume(tmp_path, bad):
    logs, conf, out, pos = _setup(tmp_path)
    assert len(_run(conf, out)[0]) == 100
    _grow(logs)
    lines = pos.read_text().splitlines()
    a = next(i for i, line in enumerate(lines) if "a.log" in line)
    entry = json.loads(lines[a])
    lines[a] = json.dumps(entry).replace(f'"offset": {entry["offset"]}', f'"offset": {bad}')
    pos.write_text("\n".join(lines) + "\n")
    rows, err = _run(conf, out)
    assert "damaged position entry dropped" in err, err
    # b resumes where it was; a, its entry gone, is read as a new file (again, not lost)
    assert [r for r in rows if r.startswith("b")] == ["b new 1"]
    assert [r for r in rows if r.startswith("a")][-1] == "a new 1"


@pytest.mark.parametrize("damage", ["", "\x00" * 300, "not json at all\n"])
def test_a_positions_file_found_empty_or_damaged_falls_back_to_the_one_before(tmp_path, damage):
    logs, conf, out, pos = _setup(tmp_path)
    assert len(_run(conf, out)[0]) == 100
    _grow(logs, 1)
    assert sorted(_run(conf, out)[0]) == ["a new 1", "b new 1"]
    _grow(logs, 2)
    pos.write_text(damage)
    rows, err = _run(conf, out)
    assert "the positions before it are used" in err, err
    # from the run before's positions: its lines again (at least once), not the 100 old ones
    assert sorted(rows) == ["a new 1", "a new 2", "b new 1", "b new 2"]
    _grow(logs, 3)
    assert sorted(_run(conf, out)[0]) == ["a new 3", "b new 3"]  # and the file is whole again
