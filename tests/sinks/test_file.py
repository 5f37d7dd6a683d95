"""Sink file: placeholders in paths, rotation by size and time, gzip, appending across runs."""

from __future__ import annotations

import asyncio
import gzip
import json
import time

from helpers import make_plugin, run_pipeline


def write_batches(sink, *batches):
    async def main():
        await sink.start()
        for batch in batches:
            await sink.write(batch)
        await sink.stop()
    asyncio.run(main())


def events(tag, n, start=0, t=1700000000 * 10**9):
    return [(tag, t, {"i": i, "pad": "x" * 50}) for i in range(start, start + n)]


def test_tag_and_strftime_placeholders(tmp_path):
    sink = make_plugin("sink", "file", path=str(tmp_path / "${tag}" / "%Y-%m-%d.jsonl"), utc=True)
    write_batches(sink, events("a.b", 2) + events("c", 1) + [("a.b", 86400 * 10**9, {"i": 9})])
    assert [json.loads(x)["i"] for x in (tmp_path / "a.b/2023-11-14.jsonl").read_text().splitlines()] == [0, 1]
    assert (tmp_path / "c/2023-11-14.jsonl").read_text().count("\n") == 1
    # the event time under `time` (nanoseconds kept), no tag: the path holds it already
    assert json.loads((tmp_path / "a.b/1970-01-02.jsonl").read_text()) == {"i": 9, "time": "1970-01-02T00:00:00.000000000Z"}


def test_rotation_by_size_with_gzip(tmp_path):
    path = tmp_path / "out.jsonl"
    sink = make_plugin("sink", "file", path=str(path), max_size=1000, compress="gzip")
    write_batches(sink, *[events("t", 5, start=i * 5) for i in range(6)])
    rotated = sorted(tmp_path.glob("out.jsonl.*.gz"))
    assert rotated and not list(tmp_path.glob("out.jsonl.*[0-9]"))  # every rotated file was gzipped
    numbers = []
    for f in rotated:
        data = gzip.decompress(f.read_bytes())
        assert len(data) <= 1000
        numbers += [json.loads(x)["i"] for x in data.splitlines()]
    numbers += [json.loads(x)["i"] for x in path.read_text().splitlines()]
    assert numbers == list(range(30))  # nothing lost, nothing split, in order
    assert sink.ctx.counters["rotations"] == len(rotated)


def test_rotation_by_time(tmp_path):
    path = tmp_path / "out.jsonl"
    sink = make_plugin("sink", "file", path=str(path), rotate_interval=1)

    async def main():
        await sink.start()
        await sink.write(events("t", 1))
        await asyncio.sleep(1.1)
        await sink.write(events("t", 1, start=1))
        await sink.stop()
    asyncio.run(main())
    [rotated] = tmp_path.glob("out.jsonl.*")
    assert json.loads(rotated.read_text())["i"] == 0 and json.loads(path.read_text())["i"] == 1


def test_appends_across_runs(tmp_path):
    out = tmp_path / "out.jsonl"
    conf = tmp_path / "c.yaml"
    conf.write_text(f"sources:\n  in: {{type: stdin}}\nsinks:\n  f: {{type: file, inputs: [in], path: {out}}}\n")
    for i in range(2):
        result = run_pipeline("run", "--once", str(conf), input=b"".join(b'{"run": %d, "i": %d}\n' % (i, j)
                                                                         for j in range(1000)))
        assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 2000 and [json.loads(x)["run"] for x in lines] == [0] * 1000 + [1] * 1000
    assert time.time() - out.stat().st_mtime < 60


def test_a_full_disk_keeps_the_rotated_file_and_logs_once(small_disk, caplog):
    import gc
    import os

    from helpers import fill

    path = small_disk / "out.jsonl"
    sink = make_plugin("sink", "file", path=str(path), max_size=200_000, compress="gzip")
    lines = [("t", 0, {"i": i, "pad": os.urandom(40).hex()}) for i in range(1500)]  # 150 kB, hardly compressible

    async def main():
        await sink.start()
        await sink.write(lines)
        fill(small_disk, leave=0)
        for _ in range(2):  # rotates (the gzip fails), then the write on the full disk fails
            try:
                await sink.write(lines)
            except OSError:
                pass
            while sink._compressing:
                await asyncio.sleep(0.01)
        gc.collect()  # a task whose exception nobody took logs it when collected
        await sink.stop()
    asyncio.run(main())
    [rotated] = small_disk.glob("out.jsonl.*")
    assert [json.loads(x)["i"] for x in rotated.read_text().splitlines()] == list(range(1500))
    failed = [r for r in caplog.records if "cannot gzip" in r.getMessage()]
    assert len(failed) == 1 and "No space left" in failed[0].getMessage()
    assert "never retrieved" not in caplog.text


def test_the_archive_keeps_each_events_time_and_tag_by_default_under_keys_one_can_rename_or_drop(tmp_path):
    """As fluentd's out_file: a parsed line's time is no longer in its record (the parser took
    it), so an archive without it would lose it; the tag too, unless the path holds it."""
    t = 1700000000 * 10**9 + 123456789
    batch = [("web.access", t, {"status": 200}), ("web.access", t, {"tag": "own", "time": "own"})]
    plain = make_plugin("sink", "file", path=str(tmp_path / "plain.jsonl"))
    renamed = make_plugin("sink", "file", path=str(tmp_path / "renamed.jsonl"), time_key="@timestamp",
                          tag_key="fluent_tag", time_format="unix")
    dropped = make_plugin("sink", "file", path=str(tmp_path / "dropped.jsonl"), time_key="", tag_key="")
    for sink in (plain, renamed, dropped):
        write_batches(sink, batch)
    rows = lambda name: [json.loads(x) for x in (tmp_path / name).read_text().splitlines()]  # noqa: E731
    assert rows("plain.jsonl") == [
        {"status": 200, "tag": "web.access", "time": "2023-11-14T22:13:20.123456789Z"},
        {"tag": "own", "time": "own"}]  # a record's own fields are kept
    assert rows("renamed.jsonl")[0] == {"status": 200, "fluent_tag": "web.access", "@timestamp": 1700000000}
    assert rows("dropped.jsonl") == [{"status": 200}, {"tag": "own", "time": "own"}]


def test_error_records_in_an_archive_carry_their_time(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text(f"sources:\n  in: {{type: stdin, format: json}}\n"
                    f"sinks:\n  out: {{type: discard, inputs: [in]}}\n"
                    f"  errors: {{type: file, inputs: [_errors], path: {tmp_path / 'errors.jsonl'}}}\n")
    result = run_pipeline("run", "--once", str(conf), input=b"not json\n")
    assert result.returncode == 0, result.stderr.decode()
    [error] = [json.loads(x) for x in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert error["time"].endswith("Z") and error["tag"] == "pipeline.error.in" and error["kind"] == "bad_input"
