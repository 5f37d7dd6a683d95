"""Source tail: --once, tags and paths, formats, encodings, multiline on real traces, bad input
and damaged positions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from helpers import FIXTURES, make_plugin, run_measured, run_pipeline, start_pipeline, wait_for
from tail_peers import Tail, once


def test_once_reads_to_the_end_commits_and_the_next_run_goes_on(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("one\ntwo\r\nthree")  # the last line has no newline yet
    rows, _ = once(tmp_path, f"path: {log}, read_from_head: true")
    assert [r["message"] for r in rows] == ["one", "two", "three"]
    with open(log, "a") as f:
        f.write("\nfour\n")
    rows, _ = once(tmp_path, f"path: {log}, read_from_head: true")
    # at --once's end a line without its newline went out as it was: its newline is an empty line
    assert [r["message"] for r in rows] == ["", "four"]
    rows, _ = once(tmp_path, f"path: {log}, read_from_head: true")
    assert rows == []


def test_first_start_reads_from_the_end_and_later_files_from_the_head(tmp_path):
    logs = tmp_path / "logs"
    (logs / "deep" / "er").mkdir(parents=True)
    (logs / "old.log").write_text("history\n")
    rows, _ = once(tmp_path, f"path: '{logs}/**/*.log', exclude: '{logs}/**/skip.log'")
    assert rows == []
    with open(logs / "old.log", "a") as f:
        f.write("new in old\n")
    (logs / "deep" / "er" / "new.log").write_text("new file\n")
    (logs / "deep" / "skip.log").write_text("excluded\n")
    rows, _ = once(tmp_path, f"path: '{logs}/**/*.log', exclude: '{logs}/**/skip.log', tag: 'app.*', "
                             f"path_key: file")
    got = {(r["tag"], r["message"], r["file"]) for r in rows}
    deep = f"{logs}/deep/er/new.log"
    assert got == {("app." + f"{logs}/old.log".strip("/").replace("/", "."), "new in old", f"{logs}/old.log"),
                   ("app." + deep.strip("/").replace("/", "."), "new file", deep)}


def test_json_format_and_bad_lines_to_errors(tmp_path):
    log = tmp_path / "app.log"
    log.write_text('{"a": 1}\n[1, 2]\nnot json\n{"b": "ü"}\n')
    rows, _ = once(tmp_path, f"path: {log}, read_from_head: true, format: json", errors=True)
    assert [{k: v for k, v in r.items() if k not in ("tag", "time")} for r in rows] == [{"a": 1}, {"b": "ü"}]
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in errors] == ["parse_error", "parse_error"] and errors[1]["message"] == "not json"


def test_encodings_and_undecodable_bytes(tmp_path):
    log = tmp_path / "sjis.log"
    log.write_bytes("ログ一行目\n".encode("shift_jis") + b"bad \xff\xfe byte\n" + "二行目\n".encode("shift_jis"))
    rows, _ = once(tmp_path, f"path: {log}, read_from_head: true, encoding: shift_jis")
    assert [r["message"] for r in rows] == ["ログ一行目", "bad \ufffd\ufffd byte", "二行目"]
    latin = tmp_path / "latin.log"
    latin.write_bytes("café\n".encode("latin-1"))
    rows, _ = once(tmp_path, f"path: {latin}, read_from_head: true, encoding: latin-1")
    assert [r["message"] for r in rows] == ["café"]


def test_unknown_encoding_and_bad_regex_are_config_errors(tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("sources:\n  t: {type: tail, path: /x, encoding: klingon, multiline: {start: '('}}\n"
                    "sinks:\n  out: {type: stdout, inputs: [t]}\n")
    done = run_pipeline("check", str(conf))
    err = done.stderr.decode()
    assert done.returncode == 2
    assert f"{conf}:2: sources.t.encoding: unknown encoding 'klingon'" in err
    assert f"{conf}:2: sources.t.multiline.start: not a valid regular expression" in err


def test_long_lines_binary_and_nul_bytes_are_survived(tmp_path):
    log = tmp_path / "app.log"
    with open(log, "wb") as f:
        f.write(b"before\n" + b"y" * 5000 + b"\nafter\x00nul\n" + os.urandom(20000) + b"\nend\n")
    rows, _ = once(tmp_path, f"path: {log}, read_from_head: true, max_line_bytes: 1000", errors=True)
    messages = [r["message"] for r in rows]
    assert messages[:2] == ["before", "after\x00nul"] and messages[-1] == "end"
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert errors[0]["kind"] == "line_too_long" and errors[0]["origin"] == f"{log} offset 7"
    assert errors[0]["sample"].startswith("yyyy")


def test_100mb_without_a_newline_in_bounded_memory(tmp_path):
    log = tmp_path / "huge.log"
    with open(log, "wb") as f:
        block = b"z" * (1 << 20)
        for _ in range(100):
            f.write(block)
        f.write(b"\nthe end\n")
    conf = tmp_path / "huge.yaml"
    out = tmp_path / "out.jsonl"
    conf.write_text(f"state_dir: {tmp_path / 'state'}\nsources:\n  t: {{type: tail, path: {log}, read_from_head: true}}\n"
                    f"sinks:\n  out: {{type: file, inputs: [t], path: {out}}}\n")
    done, peak = run_measured("run", "--once", str(conf), timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert [json.loads(line)["message"] for line in out.read_text().splitlines()] == ["the end"]
    assert peak < 80 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_directory_and_fifo_skipped_unreadable_retried(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "dir.log").mkdir()
    os.mkfifo(logs / "fifo.log")
    secret = logs / "secret.log"
    secret.write_text("hidden\n")
    secret.chmod(0)
    if os.access(secret, os.R_OK):  # root reads anything
        secret.chmod(0o644)
        unreadable = False
    else:
        unreadable = True
    tail = Tail(tmp_path, f"path: '{logs}/*.log', read_from_head: true").start()
    (logs / "ok.log").write_text("fine\n")
    assert wait_for(lambda: "fine" in tail.messages())
    if unreadable:
        assert "hidden" not in tail.messages()
        secret.chmod(0o644)
        assert wait_for(lambda: "hidden" in tail.messages())
    err = tail.stop()
    if unreadable:
        assert err.count(f"cannot read {secret}") == 1, err


def test_damaged_positions_entry_is_reported_and_dropped(tmp_path):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("a1\n")
    b.write_text("b1\n")
    rows, _ = once(tmp_path, f"path: '{tmp_path}/*.log', read_from_head: true")
    assert sorted(r["message"] for r in rows) == ["a1", "b1"]
    positions = tmp_path / "state" / "t.positions"
    entries = positions.read_text().splitlines()
    damaged = next(e for e in entries if "a.log" in e)
    positions.write_text(damaged[: len(damaged) // 2] + "\n" + "\n".join(e for e in entries if e != damaged) + "\n")
    for p in (a, b):
        with open(p, "a") as f:
            f.write(p.stem + "2\n")
    rows, err = once(tmp_path, f"path: '{tmp_path}/*.log', read_from_head: true", errors=True)
    # b goes on from its position; a, its entry lost, is read again from its head
    assert sorted(r["message"] for r in rows) == ["a1", "a2", "b2"]
    assert "damaged position entry dropped" in err


# ---- multiline, on real traces

_PYTHON_APP = r"""
import logging, sys
logging.basicConfig(filename=sys.argv[1], format="%(asctime)s %(levelname)s %(message)s")
log = logging.getLogger("app")
def parse(text):
    return int(text)
def load(text):
    try:
        return parse(text)
    except ValueError as e:
        raise KeyError("config value " + text) from e
for i in range(3):
    log.warning("request %d starts", i)
    try:
        try:
            load("x%d" % i)
        except KeyError:
            {}["missing"]
    except Exception:
        log.exception("request %d failed", i)
log.warning("done")
"""

_STAMP = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"


def test_multiline_real_python_traceback(tmp_path):
    log = tmp_path / "py.log"
    subprocess.run([sys.executable, "-c", _PYTHON_APP, str(log)], check=True)
    text = log.read_text()
    assert "During handling of the above exception" in text and "The above exception was the direct cause" in text
    rows, _ = once(tmp_path, f"path: {log}, read_from_head: true, multiline: {{start: '{_STAMP}'}}")
    messages = [r["message"] for r in rows]
    assert len(messages) == 7  # 3 starts, 3 failures with their tracebacks, done
    assert "\n".join(messages) + "\n" == text
    assert "ERROR request 0 failed\nTraceback" in messages[1]
    assert messages[1].count("Traceback (most recent call last)") == 3


def test_multiline_real_java_stack_trace_with_nested_causes(tmp_path):
    log = tmp_path / "java.log"
    log.write_bytes((FIXTURES / "multiline" / "java_nested_causes.log").read_bytes())
    rows, _ = once(tmp_path, f"path: {log}, read_from_head: true, multiline: {{start: '{_STAMP}'}}")
    messages = [r["message"] for r in rows]
    assert len(messages) == 5
    assert "\n".join(messages) + "\n" == log.read_text()
    failed = messages[1].split("\n")
    assert failed[1].startswith("java.lang.RuntimeException") and sum(line.startswith("Caused by:") for line in failed) == 2


def test_multiline_max_lines_and_timeout(tmp_path):
    log = tmp_path / "m.log"
    log.write_text("".join(f"{i}\n" for i in range(7)))
    rows, _ = once(tmp_path, f"path: {log}, read_from_head: true, multiline: {{start: '^S', max_lines: 3}}")
    assert [r["message"] for r in rows] == ["0\n1\n2", "3\n4\n5", "6"]
    log2 = tmp_path / "t.log"
    log2.write_text("S first\n  more\n")
    tail = Tail(tmp_path, f"path: {log2}, read_from_head: true, multiline: {{start: '^S', timeout: 0.5s}}").start()
    assert wait_for(lambda: tail.messages() == ["S first\n  more"])
    tail.stop()


def test_multiline_position_counts_whole_records_through_a_kill(tmp_path):
    log = tmp_path / "m.log"
    log.write_text("S one\nS two\n  held part\n")
    tail = Tail(tmp_path, f"path: {log}, read_from_head: true, multiline: {{start: '^S', timeout: 1h}}").start()
    positions = tail.dir / "state" / "t.positions"
    assert wait_for(lambda: tail.messages() == ["S one"])
    # the held record is not complete: the position stays at its start
    assert wait_for(lambda: json.loads(positions.read_text())["offset"] == len("S one\n"))
    tail.kill()
    with open(log, "a") as f:
        f.write("  rest\nS three\n")
    tail.start()
    assert wait_for(lambda: "S two\n  held part\n  rest" in tail.messages())
    assert tail.messages()[:2] == ["S one", "S two\n  held part\n  rest"]
    tail.stop()


def test_a_path_that_matches_nothing_is_said_at_start_and_again_while_it_stays_so(tmp_path, caplog, monkeypatch):
    from pipeline.engine import context

    monkeypatch.setattr(context, "LOG_EVERY", 0.0)  # each scan says it, where a daemon says it once a minute
    missing = tmp_path / "logs" / "app-*.log"
    source = make_plugin("source", "tail", path=[str(missing), str(tmp_path / "there.log")],
                         pos_file=str(tmp_path / "pos"))
    (tmp_path / "there.log").write_text("x\n")
    source._glob()
    source._glob()
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 2 and all(f"path {str(missing)!r} matches no file (yet)" in m for m in said), said
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "app-1.log").write_text("x\n")
    caplog.clear()
    source._glob()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_daemon_says_at_start_that_a_path_matches_nothing(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text(f"state_dir: {tmp_path}/state\nsources:\n  t: {{type: tail, path: {tmp_path}/nope/*.log}}\n"
                    f"sinks:\n  out: {{type: discard, inputs: [t]}}\n")
    proc = start_pipeline("run", str(conf))
    try:
        assert wait_for(lambda: (tmp_path / "state").exists(), timeout=15)
        time.sleep(1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert f"warning source.t: path '{tmp_path}/nope/*.log' matches no file (yet)" in err.decode(), err.decode()
