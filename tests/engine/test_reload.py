"""Reload on SIGHUP and flush on SIGUSR1, sent to a real `pipeline run` whose config is rewritten."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from forward_peers import Receiver
from helpers import ROOT, free_port, port_open, run_pipeline, wait_for

# each run prints the next 50 numbers: a counter file makes them unique across runs
COUNTER = ("n=$(cat {state} 2>/dev/null || echo 0); echo $((n+50)) > {state}; "
           "seq $((n+1)) $((n+50)) | sed 's/.*/{{\\\"n\\\": &}}/'")


def counter_source(state: Path, interval: str = "0.2s") -> str:
    return (f"{{type: exec, interval: {interval}, shell: true, format: json_lines, "
            f"command: \"{COUNTER.format(state=state)}\"}}")


class Running:
    """`python -m pipeline run CONF` with its log in a file, to be read while it runs."""

    def __init__(self, conf: Path):
        self.conf = conf
        self.log = conf.with_suffix(".log")
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(conf)], stderr=err,
                                         stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(ROOT)))

    def text(self) -> str:
        return self.log.read_text()

    def reload(self, conf_text: str, done: str = "reloaded") -> None:
        """Rewrite the config, send HUP and wait for the log to say `done` once more."""
        before = self.text().count(done)
        self.conf.write_text(conf_text)
        self.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: self.text().count(done) > before), self.text()

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        assert self.proc.returncode == 0, self.text()
        return self.text()


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def numbers(*paths: Path) -> list[int]:
    return [r["n"] for p in paths for r in lines(p)]


def produced(state: Path) -> int:
    return int(state.read_text() or 0) if state.exists() else 0


def test_a_bad_edit_is_refused_with_checks_errors_and_the_old_graph_goes_on(tmp_path):
    state, out = tmp_path / "n", tmp_path / "out.jsonl"
    conf = tmp_path / "c.yaml"
    good = f"sources:\n  count: {counter_source(state)}\nsinks:\n  out: {{type: file, inputs: [count], path: {out}}}\n"
    conf.write_text(good)
    run = Running(conf)
    assert wait_for(lambda: len(numbers(out)) >= 50)
    bad = good.replace("inputs: [count]", "inputs: [cuont], flush_intervl: 1s")
    run.reload(bad, done="reload refused")
    checked = run_pipeline("check", str(conf))
    assert checked.returncode == 2
    expected = [line for line in checked.stderr.decode().splitlines() if not line.endswith("nothing started")]
    assert any(f"{conf}:4: sinks.out.flush_intervl" in line for line in expected), expected
    for line in expected:
        assert f"error reload: {line}" in run.text()
    # the old graph runs on: the same sink, still written
    seen = len(numbers(out))
    assert wait_for(lambda: len(numbers(out)) >= seen + 100)
    assert run.proc.poll() is None
    log = run.stop()
    got = numbers(out)
    assert got == list(range(1, len(got) + 1)) and produced(state) - len(got) in (0, 50), log


def test_a_sink_moved_by_a_reload_loses_and_doubles_nothing_of_a_forward_stream(tmp_path):
    """The forward source's config is unchanged: it keeps its socket, and the sender's
    connection, while the sink behind it moves to another file."""
    port = free_port()
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    recv_conf = tmp_path / "recv.yaml"
    recv = ("sources:\n  in: {{type: forward, port: {port}}}\n"
            "sinks:\n  out: {{type: file, inputs: [in], path: {out}}}\n")
    recv_conf.write_text(recv.format(port=port, out=first))
    receiver = Running(recv_conf)
    assert wait_for(lambda: port_open(port)), receiver.text()
    state = tmp_path / "n"
    send_conf = tmp_path / "send.yaml"
    send_conf.write_text(f"sources:\n  count: {counter_source(state, '0.1s')}\nsinks:\n  fw: {{type: forward, "
                         f"inputs: [count], max_in_flight: 1, servers: [{{host: 127.0.0.1, port: {port}}}]}}\n")
    sender = Running(send_conf)
    assert wait_for(lambda: len(numbers(first)) >= 200)
    receiver.reload(recv.format(port=port, out=second))
    assert wait_for(lambda: len(numbers(second)) >= 200)
    sender.stop()
    assert wait_for(lambda: len(numbers(first, second)) >= produced(state) - 50)
    log = receiver.stop()
    a, b = numbers(first), numbers(second)
    assert a and b and max(a) < min(b), log  # every event after the reload went to the new path
    assert a + b == list(range(1, len(a) + len(b) + 1)) and produced(state) - len(a + b) in (0, 50), log
    assert "restarted out" in log and "in" not in log.split("reloaded: ")[1].split("\n")[0].split(", ")


RATED = """
sources:
  count:
    type: exec
    interval: 0.2s
    shell: true
    format: json_lines
    command: "n=$(cat {state} 2>/dev/null || echo 0); echo $((n+10)) > {state}; echo '{{\\"c\\": '$n'}}'"
filters:
  rate: {{type: rate, inputs: [count], fields: [c]{rate}}}
sinks:
  out: {{type: file, inputs: [rate], path: {out}}}
"""


def test_a_rate_keeps_its_series_across_reloads(tmp_path):
    """No sample has been saved yet (state is saved every minute and at the end): only the
    series kept in memory give the first record after each reload its rate."""
    state = tmp_path / "n"
    outs = [tmp_path / f"out{i}.jsonl" for i in range(3)]
    conf = tmp_path / "c.yaml"
    conf.write_text(RATED.format(state=state, out=outs[0], rate=""))
    run = Running(conf)
    assert wait_for(lambda: len(lines(outs[0])) >= 3)
    assert "c_rate" not in lines(outs[0])[0] and "c_rate" in lines(outs[0])[1]
    run.reload(RATED.format(state=state, out=outs[1], rate=""))  # the rate's config is the same
    assert wait_for(lambda: len(lines(outs[1])) >= 1)
    assert lines(outs[1])[0]["c_rate"] > 0
    run.reload(RATED.format(state=state, out=outs[2], rate=", suffix: _per_s"))  # a new rate, the old series
    assert wait_for(lambda: len(lines(outs[2])) >= 1)
    assert lines(outs[2])[0]["c_per_s"] > 0
    log = run.stop()
    assert "restarted rate, out" in log or "restarted out, rate" in log, log


def test_a_removed_source_stops_and_an_added_one_starts(tmp_path):
    kept, removed, added = tmp_path / "kept", tmp_path / "removed", tmp_path / "added"
    out = tmp_path / "out.jsonl"
    conf = tmp_path / "c.yaml"
    body = "sources:\n  kept: {kept}\n  {other}: {src}\nsinks:\n  out: {{type: file, inputs: [kept, {other}], path: {out}}}\n"
    conf.write_text(body.format(kept=counter_source(kept), other="removed", src=counter_source(removed), out=out))
    run = Running(conf)
    assert wait_for(lambda: produced(removed) >= 100)
    run.reload(body.format(kept=counter_source(kept), other="added", src=counter_source(added), out=out))
    stopped_at, kept_at = produced(removed), produced(kept)
    assert wait_for(lambda: produced(added) >= 150 and produced(kept) >= kept_at + 150)
    assert produced(removed) == stopped_at
    log = run.stop()
    # the sink only has other inputs: it is rewired, not restarted
    assert "reloaded: started added; stopped removed\n" in log, log


def test_sigusr1_writes_out_what_a_long_flush_interval_holds(tmp_path):
    state, out = tmp_path / "n", tmp_path / "out.jsonl"
    conf = tmp_path / "c.yaml"
    conf.write_text(f"sources:\n  count: {counter_source(state)}\n"
                    f"sinks:\n  out: {{type: file, inputs: [count], path: {out}, flush_interval: 1h}}\n")
    run = Running(conf)
    assert wait_for(lambda: produced(state) >= 100)
    assert not numbers(out)  # an hour's batch: nothing written yet
    held = produced(state) - 50  # the last run may be in the exec source still
    run.proc.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: len(numbers(out)) >= held, timeout=5)
    assert run.proc.poll() is None
    got = numbers(out)
    assert got == list(range(1, len(got) + 1))
    run.stop()


@pytest.mark.parametrize("buffer", ["{{}}", "{{type: file, path: {dir}/buf}}", "{{type: file, path: {dir}/buf{n}}}"],
                         ids=["memory", "file-same-path", "file-new-path"])
def test_what_a_changed_sink_could_not_write_goes_to_its_new_config(tmp_path, buffer):
    """A forward sink pointed at a dead port holds its events; the reload that points it at
    a live receiver must carry them over, not drop them after shutdown_timeout."""
    receiver = Receiver(tmp_path)
    state = tmp_path / "n"
    conf = tmp_path / "c.yaml"
    body = ("shutdown_timeout: 1s\nsources:\n  count: {src}\nsinks:\n  fw: {{type: forward, inputs: [count], "
            "retry_max_interval: 0.2s, servers: [{{host: 127.0.0.1, port: {port}}}], buffer: {buffer}}}\n")
    dead = free_port()
    conf.write_text(body.format(src=counter_source(state), port=dead, buffer=buffer.format(dir=tmp_path, n=1)))
    run = Running(conf)
    assert wait_for(lambda: produced(state) >= 200)
    run.reload(body.format(src=counter_source(state), port=receiver.port, buffer=buffer.format(dir=tmp_path, n=2)))
    assert wait_for(lambda: len(receiver.records()) >= 200)
    log = run.stop()
    assert wait_for(lambda: len(receiver.records()) >= produced(state) - 50)
    receiver.stop()
    got = sorted(r["n"] for r in receiver.records())
    assert got == list(range(1, len(got) + 1)) and produced(state) - len(got) in (0, 50), log
    assert "not written before shutdown_timeout" in log  # the old one did not get through


def test_the_diff_restarts_only_what_changed_and_rewires_the_rest(tmp_path):
    from pipeline.config.graph import load_config
    from pipeline.engine.reload import diff

    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("sources:\n  a: {type: stdin}\n  b: {type: stdin}\n"
                   "filters:\n  r: {type: rate, inputs: [a], fields: [c]}\n"
                   "sinks:\n  out: {type: stdout, inputs: [r]}\n  gone: {type: discard, inputs: [b]}\n")
    # r: other inputs and a match (rewired); out: another format (restarted)
    new.write_text("sources:\n  a: {type: stdin}\n  c: {type: stdin}\n"
                   "filters:\n  r: {type: rate, inputs: [a, c], match: 'x.**', fields: [c]}\n"
                   "sinks:\n  out: {type: stdout, inputs: [r], format: msgpack}\n")
    plan = diff(load_config(old), load_config(new))
    assert (plan.kept, plan.replaced, plan.added, plan.removed) == (["a", "r"], ["out"], ["c"], ["b", "gone"])


def test_a_changed_source_is_restarted_on_its_own_port(tmp_path):
    """The old listener is closed before the new one binds: the same port is taken again."""
    from forward_peers import numbered, send, sender_conf

    port, out = free_port(), tmp_path / "out.jsonl"
    conf = tmp_path / "c.yaml"
    body = "sources:\n  in: {{type: forward, port: {port}{more}}}\nsinks:\n  out: {{type: file, inputs: [in], path: {out}}}\n"
    conf.write_text(body.format(port=port, more="", out=out))
    run = Running(conf)
    assert wait_for(lambda: port_open(port)), run.text()
    sender = sender_conf(tmp_path, f"servers: [{{host: 127.0.0.1, port: {port}}}]")
    assert send(sender, numbered(100)).returncode == 0
    run.reload(body.format(port=port, more=", max_message_bytes: 1MiB", out=out))
    assert send(sender, numbered(100, start=100)).returncode == 0
    assert wait_for(lambda: len(numbers(out)) >= 200)
    log = run.stop()
    assert numbers(out) == list(range(200)) and "reloaded: restarted in\n" in log, log
