"""The runtime: draining on signals, --once exit status, clock-aligned polls, error routing."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
from helpers import run_pipeline, start_pipeline, wait_for

from pipeline.config.graph import load_config
from pipeline.engine.runtime import Runtime
from pipeline.plugin import Filter, PollSource

COUNTER = """
sources:
  count:
    type: exec
    interval: 0.2s
    shell: true
    format: json_lines
    # each run prints the next 50 numbers: a counter file makes them unique across runs
    command: "n=$(cat {state} 2>/dev/null || echo 0); echo $((n+50)) > {state}; seq $((n+1)) $((n+50)) | sed 's/.*/{{\\"n\\": &}}/'"
sinks:
  out:
    type: file
    inputs: [count]
    path: {out}
    flush_interval: 5s
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_everything_accepted(tmp_path, sig):
    out, state = tmp_path / "out.jsonl", tmp_path / "n"
    conf = tmp_path / "c.yaml"
    conf.write_text(COUNTER.format(out=out, state=state))
    proc = start_pipeline("run", str(conf))
    # flush_interval is 5 s: what was polled so far is still in the buffer when the signal comes
    assert wait_for(lambda: state.exists() and int(state.read_text() or 0) >= 150)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    numbers = [json.loads(line)["n"] for line in out.read_text().splitlines()]
    produced = int(state.read_text())
    # every run that finished before the stop was written; none twice, none lost
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 100 and produced - len(numbers) in (0, 50)
    assert b"draining" in err


def test_sighup_reopens_files_and_keeps_running(tmp_path):
    """fluentd users send HUP by habit, and logrotate does after moving the file away."""
    out, state = tmp_path / "out.jsonl", tmp_path / "n"
    conf = tmp_path / "c.yaml"
    conf.write_text(COUNTER.format(out=out, state=state).replace("flush_interval: 5s", "flush_interval: 0.5s"))
    proc = start_pipeline("run", str(conf))
    assert wait_for(lambda: out.read_bytes().count(b"\n") >= 50)
    rotated = out.rename(tmp_path / "out.jsonl.1")
    proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: out.read_bytes().count(b"\n") >= 50)  # written to the path, not the moved file
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert b"SIGHUP: reopening files" in err
    numbers = [json.loads(line)["n"] for f in (rotated, out) for line in f.read_text().splitlines()]
    # nothing lost or doubled across the HUP (a poll cut short by the TERM may be missing)
    assert numbers == list(range(1, len(numbers) + 1)) and int(state.read_text()) - len(numbers) in (0, 50)


def test_once_exit_status_and_reason_on_stderr(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("sources:\n  ok: {type: exec, command: \"echo '{\\\"a\\\": 1}'\", shell: true}\n"
                    "  bad: {type: exec, command: [no-such-command-pipeline-test]}\n"
                    "sinks:\n  out: {type: stdout, inputs: [ok, bad]}\n")
    result = run_pipeline("run", "--once", str(conf))
    assert result.returncode == 1
    assert result.stdout == b'{"a":1}\n'  # logs never reach stdout
    assert b"failed: source bad: cannot run 'no-such-command-pipeline-test'" in result.stderr
    assert b"Traceback" not in result.stderr


def test_once_succeeds(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("sources:\n  ok: {type: exec, command: \"echo '{\\\"a\\\": 1}'\", shell: true}\n"
                    "sinks:\n  out: {type: stdout, inputs: [ok]}\n")
    result = run_pipeline("run", "--once", str(conf))
    assert (result.returncode, result.stdout) == (0, b'{"a":1}\n')


def test_sink_that_cannot_write_fails_within_shutdown_timeout(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a regular file, so no directory can be made under it")
    conf = tmp_path / "c.yaml"
    conf.write_text(f"shutdown_timeout: 1s\nsources:\n  ok: {{type: exec, command: 'echo {{}}', shell: true}}\n"
                    f"sinks:\n  out: {{type: file, inputs: [ok], path: {blocker}/sub/out.jsonl}}\n")
    started = time.monotonic()
    result = run_pipeline("run", "--once", str(conf))
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "sink out: 1 events not written before shutdown_timeout" in err
    assert "failed: sink out: not everything was written (write failed:" in err


GIVES_UP = """
shutdown_timeout: 10s
sources:
  ok: {{type: exec, command: 'echo {{}}', shell: true, interval: 0.3s}}
sinks:
  out: {{type: file, inputs: [ok], path: {blocker}/sub/out.jsonl, retry_timeout: 0.5s, retry_max_interval: 0.1s}}
  errors: {{type: file, inputs: [_errors], path: {errors}}}
"""


def test_events_given_up_make_the_exit_status_1(tmp_path):
    blocker, errors = tmp_path / "file", tmp_path / "errors.jsonl"
    blocker.write_text("a regular file, so no directory can be made under it")
    conf = tmp_path / "c.yaml"
    conf.write_text(GIVES_UP.format(blocker=blocker, errors=errors))
    result = run_pipeline("run", "--once", str(conf))
    err = result.stderr.decode()
    assert "gave up 1 events: write failed:" in err
    assert result.returncode == 1, err
    assert "failed: sink out: 1 events given up (write failed: [Errno 20] Not a directory" in err
    # the errors output drains after the sink that gave them up
    assert [json.loads(x)["record"] for x in errors.read_text().splitlines()] == [{}]
    errors.unlink()
    # a daemon's final exit too, though the events were given up long before the signal
    proc = start_pipeline("run", str(conf))
    assert wait_for(lambda: b"gave up after" in errors.read_bytes())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1, err
    assert b"events given up (write failed:" in err


def test_state_that_cannot_be_saved_makes_the_exit_status_1(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a regular file, so no directory can be made under it")
    conf = tmp_path / "c.yaml"
    conf.write_text(f"state_dir: {blocker}/state\n"
                    "sources:\n  ok: {type: exec, command: 'echo {\\\"n\\\": 1}', shell: true}\n"
                    "filters:\n  r: {type: rate, inputs: [ok], fields: [n]}\n"
                    "sinks:\n  out: {type: stdout, inputs: [r]}\n")
    result = run_pipeline("run", "--once", str(conf))
    err = result.stderr.decode()
    assert result.stdout == b'{"n":1}\n'
    assert result.returncode == 1, err
    assert "failed: filter r: cannot save state: [Errno 20] Not a directory" in err


def build(tmp_path, text: str, **classes) -> Runtime:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    graph = load_config(path, env={})
    for cid, cls in classes.items():
        graph.components[cid].cls = cls
    return Runtime(graph, once=False)


class SlowSource(PollSource):
    """Each poll takes 0.25 s, longer than its 0.1 s interval."""

    calls: list[float] = []

    async def poll(self):
        SlowSource.calls.append(time.time())
        await asyncio.sleep(0.25)
        return [self.event({"i": len(SlowSource.calls)})]


def test_polls_are_aligned_never_overlap_and_count_skips(tmp_path, caplog):
    SlowSource.calls = []
    rt = build(tmp_path, "sources:\n  s: {type: exec, command: x, interval: 0.1s}\n"
               "sinks:\n  o: {type: file, inputs: [s], path: " + str(tmp_path / "o") + "}\n", s=SlowSource)

    async def main():
        task = asyncio.create_task(rt.run())
        await asyncio.sleep(1.2)
        rt.stop()
        return await task

    assert asyncio.run(main()) == 0
    calls = SlowSource.calls
    assert len(calls) >= 3
    for t in calls:  # every poll starts on a tick of the clock (multiples of 0.1 s)
        assert abs(t / 0.1 - round(t / 0.1)) < 0.3
    assert all(b - a >= 0.25 for a, b in zip(calls, calls[1:]))  # never overlapping
    assert rt.contexts["s"].counters["skipped_polls"] >= len(calls) - 1
    assert "longer than interval 0.1s: skipped" in caplog.text


class Boom(Filter):
    def process(self, batch):
        if any(r.get("boom") for _, _, r in batch):
            raise ValueError("boom")
        return batch


class Mutator(Filter):
    def process(self, batch):
        return [(t, ts, {**r, "mutated": True}) for t, ts, r in batch]


def test_errors_output_filter_failure_and_fan_out(tmp_path):
    out = tmp_path / "out"
    rt = build(tmp_path, f"""
sources:
  s: {{type: stdin}}
filters:
  boom: {{type: flatten, inputs: [s]}}
  mut: {{type: flatten, inputs: [s]}}
sinks:
  plain: {{type: file, inputs: [boom], path: {out}/plain, time_key: '', tag_key: ''}}
  mutated: {{type: file, inputs: [mut], path: {out}/mutated}}
  errors: {{type: file, inputs: [_errors], path: {out}/errors}}
""", boom=Boom, mut=Mutator)

    async def main():
        await rt.emit("s", [("s", 1, {"boom": True})])
        await rt.emit("s", [("s", 2, {"x": 1})])
        rt.contexts["s"].error("not a JSON object", origin="stdin", data=b"garbage\xff")
        await rt.emit("s", [("s", 3, {"x": 2})])
        for node in rt.sinks:
            await node.runner.start()
        return await rt._shutdown([], rt.sinks)

    assert asyncio.run(main()) == 0
    plain = [json.loads(x) for x in (out / "plain").read_text().splitlines()]
    mutated = [json.loads(x) for x in (out / "mutated").read_text().splitlines()]
    errors = [json.loads(x) for x in (out / "errors").read_text().splitlines()]
    assert plain == [{"x": 1}, {"x": 2}]  # the failing batch is skipped, the rest flows
    assert all(r["mutated"] for r in mutated) and len(mutated) == 3
    assert {e["kind"] for e in errors} == {"filter_exception", "bad_input"}
    bad = next(e for e in errors if e["kind"] == "bad_input")
    assert bad["component"] == "s" and bad["origin"] == "stdin" and bad["sample"] == "garbage\\xff"
    assert rt.contexts["boom"].counters["errors"] == 1


class FlakyTicks(Filter):
    """Ticks every 50 ms; the first tick raises, later ones emit."""

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.tick_interval = 0.05
        self.ticks = 0

    def process(self, batch):
        return []

    def tick(self, now):
        self.ticks += 1
        if self.ticks == 1:
            raise RuntimeError("first tick")
        return [("t", now, {"tick": self.ticks})]


def test_a_tick_that_raises_is_reported_and_the_ticks_go_on(tmp_path):
    out = tmp_path / "out"
    rt = build(tmp_path, f"""
sources:
  s: {{type: exec, command: x, interval: 1h}}
filters:
  w: {{type: flatten, inputs: [s]}}
sinks:
  o: {{type: file, inputs: [w], path: {out}/o}}
  errors: {{type: file, inputs: [_errors], path: {out}/errors}}
""", w=FlakyTicks)

    async def main():
        task = asyncio.create_task(rt.run())
        await asyncio.sleep(0.5)
        rt.stop()
        return await task

    assert asyncio.run(main()) == 0
    ticks = [json.loads(x)["tick"] for x in (out / "o").read_text().splitlines()]
    errors = [json.loads(x) for x in (out / "errors").read_text().splitlines()]
    assert len(ticks) >= 3 and ticks[0] == 2
    assert [e["kind"] for e in errors] == ["filter_exception"] and "first tick" in errors[0]["error"]
