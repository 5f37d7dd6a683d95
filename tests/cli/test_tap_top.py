"""`pipeline tap` and `pipeline top` against a running pipeline; top for real under tmux."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time

import pytest
from api_peers import get, running
from helpers import ROOT, run_pipeline, start_pipeline, wait_for

CONFIG = """
api: {address: "{api}"}
sources:
  gen: {type: exec, command: ["echo", '{"a": 1}'], interval: 0.2s, tag: app.gen}
  other: {type: exec, command: ["echo", '{"c": 3}'], interval: 0.2s, tag: sys.other}
filters:
  ren: {type: rename, inputs: [gen, other], fields: {a: b}}
sinks:
  out: {type: discard, inputs: [ren]}
"""


def _tap(port: int, *args: str) -> subprocess.Popen:
    return start_pipeline("tap", "--api", f"127.0.0.1:{port}", *args)


def test_several_taps_at_once_each_with_its_components_match_and_limit(tmp_path):
    with running(tmp_path, CONFIG) as (_, port):
        sources = _tap(port, "gen", "other", "--limit", "6")
        filtered = _tap(port, "ren", "--match", "app.**", "--limit", "3")
        outs = [p.communicate(timeout=30) for p in (sources, filtered)]
    (s_out, s_err), (f_out, f_err) = outs
    assert sources.returncode == 0 and filtered.returncode == 0, (s_err, f_err)
    from_sources = [json.loads(line) for line in s_out.splitlines()]
    assert len(from_sources) == 6 and {e["component"] for e in from_sources} == {"gen", "other"}
    assert {json.dumps(e["record"]) for e in from_sources} == {'{"a": 1}', '{"c": 3}'}
    from_filter = [json.loads(line) for line in f_out.splitlines()]
    assert len(from_filter) == 3
    assert all(e["component"] == "ren" and e["tag"] == "app.gen" and e["record"] == {"b": 1} for e in from_filter)
    assert from_filter[0]["time"].endswith("Z")
    assert b"dropped" not in s_err + f_err


def test_a_tap_too_slow_for_the_pipeline_drops_and_says_so_and_the_pipeline_goes_on(tmp_path):
    burst = CONFIG.replace('command: ["echo", \'{"a": 1}\']',
                           "command: \"yes '{\\\"a\\\": 1}' | head -n 20000\", shell: true, format: json_lines")
    with running(tmp_path, burst) as (_, port):
        tap = _tap(port, "gen", "--limit", "1500")
        out, err = tap.communicate(timeout=60)
        status = run_pipeline("tap", "--api", f"127.0.0.1:{port}", "out")
    assert tap.returncode == 0
    assert len(out.splitlines()) == 1500
    dropped = int(err.decode().split("tap: ")[1].split()[0])
    assert dropped >= 19000, err  # a burst of 20,000 into a queue of 1,000
    assert "dropped: past --rate a second, or this reader was slower than the pipeline" in err.decode()
    assert status.returncode == 1 and b"'out' is a sink" in status.stderr


def test_a_tap_takes_at_most_its_rate_a_second_and_rate_0_has_no_cap(tmp_path):
    # 5,000 events a poll, 5 polls a second: far more than the taps' rate of 100 a second
    burst = CONFIG.replace('command: ["echo", \'{"a": 1}\']',
                           "command: \"yes '{\\\"a\\\": 1}' | head -n 5000\", shell: true, format: json_lines")
    with running(tmp_path, burst) as (_, port):
        began = time.monotonic()
        sampled = _tap(port, "gen", "--rate", "100")
        uncapped = _tap(port, "gen", "--rate", "0", "--limit", "3000")
        u_out, _ = uncapped.communicate(timeout=60)
        time.sleep(2)
        sampled.send_signal(signal.SIGINT)
        s_out, s_err = sampled.communicate(timeout=30)
        elapsed = time.monotonic() - began
    assert len(u_out.splitlines()) == 3000
    shown = len(s_out.splitlines())
    assert 100 <= shown <= 100 * (elapsed + 1), (shown, elapsed)  # one window's worth more at most
    assert "events dropped: past --rate" in s_err.decode()


def test_the_api_sends_a_tap_a_batch_a_line_cut_at_the_limit(tmp_path):
    # a batch of five per run, into a queue of 1,000 that nobody reads until the limit
    five = CONFIG.replace('command: ["echo", \'{"a": 1}\']',
                          "command: \"seq 5 | sed 's/.*/{\\\"i\\\": &}/'\", shell: true, format: json_lines")
    with running(tmp_path, five) as (_, port):
        status, body = get(port, "/api/tap?id=gen&limit=7")
    assert status == 200
    lines = [json.loads(line) for line in body.splitlines()]
    assert [line["component"] for line in lines[:2]] == ["gen", "gen"]
    assert [[tag, record] for tag, _, record in lines[0]["events"]] == [["app.gen", {"i": i}] for i in range(1, 6)]
    assert [record for _, _, record in lines[1]["events"]] == [{"i": 1}, {"i": 2}]  # cut at the limit
    assert isinstance(lines[0]["events"][0][1], int)  # time_ns: `pipeline tap` formats it, not the pipeline
    assert lines[-1] == {"dropped": 0, "end": "limit"}


def test_tap_names_an_unknown_component_and_an_api_that_is_not_there(tmp_path):
    with running(tmp_path, CONFIG) as (_, port):
        result = run_pipeline("tap", "--api", f"127.0.0.1:{port}", "nope")
    assert result.returncode == 1 and b"no component 'nope'; sources and filters: gen, other, ren" in result.stderr
    result = run_pipeline("tap", "--api", f"127.0.0.1:{port}", "gen")
    assert result.returncode == 1 and b"cannot reach the api at 127.0.0.1:" in result.stderr


def test_a_tap_ends_saying_so_when_the_pipeline_stops(tmp_path):
    with running(tmp_path, CONFIG) as (proc, port):
        tap = _tap(port, "gen")
        assert wait_for(lambda: tap.stdout.readline())  # type: ignore[union-attr]
        proc.terminate()
        _, err = tap.communicate(timeout=30)
    assert tap.returncode == 0 and b"tap: the pipeline stopped" in err


@pytest.fixture
def tmux(tmp_path):
    exe = shutil.which("tmux")
    if exe is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    used: set[str] = set()

    def run(*args: str, server: str = "tmux") -> str:
        """tmux ARGS on a server of this test's own (`server` names another one)."""
        used.add(server)
        r = subprocess.run([exe, "-S", str(tmp_path / f"{server}.sock"), *args], capture_output=True,
                           text=True, timeout=10)
        return r.stdout + r.stderr

    yield run
    for server in used:
        run("kill-server", server=server)


def test_top_under_tmux_shows_rates_health_grows_with_the_window_and_quits_on_q(tmp_path, tmux):
    with running(tmp_path, CONFIG) as (_, port):
        tmux("new-session", "-d", "-x", "80", "-y", "24", "-e", f"PYTHONPATH={ROOT}",
             f"python3 -m pipeline top --api 127.0.0.1:{port}")

        def screen() -> list[str]:
            return tmux("capture-pane", "-p").splitlines()

        def row(cid: str) -> list[str]:
            return next((line.split() for line in screen() if line.startswith(cid + " ")), [])

        # a rate once two answers are in: 5 events/s from each source into ren
        assert wait_for(lambda: len(row("ren")) >= 6 and float(row("ren")[3]) > 0, timeout=20), screen()
        lines = screen()
        assert lines[1] == "health: ok"
        assert lines[2].split() == ["ID", "KIND", "TYPE", "IN/s", "OUT/s", "ERRORS", "BUFFER", "RETRY"]
        assert [line.split()[0] for line in lines[3:7]] == ["gen", "other", "ren", "out"]  # the graph's order
        assert row("out")[:3] == ["out", "sink", "discard"] and row("out")[-1] == "ok"
        assert max(len(line) for line in lines) <= 80 and len(lines) == 24 and lines[-1] == "q quits"
        # a window of its own size: a second server, as a second terminal would be
        tmux("new-session", "-d", "-x", "120", "-y", "40", "-e", f"PYTHONPATH={ROOT}",
             f"python3 -m pipeline top --api 127.0.0.1:{port}", server="wide")
        wide = lambda: tmux("capture-pane", "-p", server="wide").splitlines()  # noqa: E731
        assert wait_for(lambda: len(wide()) == 40 and wide()[-1] == "q quits" and "ren " in wide()[5]), wide()
        assert len(wide()[2]) > 80 and wide()[2].split() == lines[2].split()
        tmux("send-keys", "q")
        assert wait_for(lambda: "no server running" in tmux("ls") or "no sessions" in tmux("ls"), timeout=10)


def test_top_says_when_the_api_is_not_there(tmp_path, tmux):
    tmux("new-session", "-d", "-x", "80", "-y", "24", "-e", f"PYTHONPATH={ROOT}",
         "python3 -m pipeline top --api 127.0.0.1:1")
    assert wait_for(lambda: "cannot reach the api" in tmux("capture-pane", "-p"), timeout=10)
