"""Filter aggregate: every function, tumbling and sliding windows, lateness, state between
runs (in process and with `run --once`), percentile accuracy, and `check` of expressions."""

from __future__ import annotations

import json
import math
import random
import statistics
import time

import msgpack
import pytest
from helpers import make_plugin, run_pipeline

from pipeline.metrics.sketch import Mapping, Sketch

S = 1_000_000_000
# windows an hour ahead: never late, and closed only when a test says so with tick(now)
BASE = (time.time_ns() // (3600 * S) + 1) * 3600 * S


def agg(**options):
    errors: list = []
    options.setdefault("window", "10s")
    f = make_plugin("filter", "aggregate", errors=errors, **options)
    return f, errors


def by_window(results):
    return {(r["window_start"], r.get("k")): r for _, _, r in results}


def test_each_function_against_exact_values():
    f, _ = agg(metrics={
        "n": "count()", "n_x": "count(x)", "sum": "sum(x)", "avg": "avg(x)", "min": "min(x)",
        "max": "max(x)", "sd": "stddev(x)", "first": "first(name)", "last": "last(name)",
        "names": "count_distinct(name)", "p50": "p50(x)", "p0": "percentile(x, 0)", "p100": "percentile(x, 100)"})
    xs = [5, 1, 9, 3, 7, 2]
    # arrival order is not time order: first and last go by event time
    times = [BASE + 3 * S, BASE + 1 * S, BASE + 5 * S, BASE + 2 * S, BASE + 4 * S, BASE + 6 * S]
    names = ["c", "a", "e", "b", "d", "a"]
    assert f.process([("t", t, {"x": x, "name": n}) for t, x, n in zip(times, xs, names)]) == []
    assert f.tick(BASE + 9 * S) == []  # still open
    [(tag, t, r)] = f.tick(BASE + 10 * S)
    assert (tag, t) == ("test", BASE)
    assert r["window_start"] == BASE // S and r["window_end"] == BASE // S + 10
    assert (r["n"], r["n_x"], r["sum"], r["min"], r["max"]) == (6, 6, 27, 1, 9)
    assert isinstance(r["sum"], int) and r["avg"] == pytest.approx(4.5)
    assert r["sd"] == pytest.approx(statistics.stdev(xs))
    assert (r["first"], r["last"], r["names"]) == ("a", "a", 5)
    assert r["p50"] == pytest.approx(3, rel=0.01) and (r["p0"], r["p100"]) == (1, 9)
    assert f.tick(BASE + 20 * S) == []  # nothing twice, no empty window by default


def test_stddev_keeps_precision_on_large_values():
    f, _ = agg(metrics={"sd": "stddev(rss)"})
    values = [1e12 + i for i in range(1000)]
    f.process([("t", BASE, {"rss": v}) for v in values])
    [(_, _, r)] = f.tick(BASE + 10 * S)
    assert r["sd"] == pytest.approx(statistics.stdev(values), rel=1e-9)


def test_missing_and_non_numeric_are_skipped_and_counted_per_metric():
    f, _ = agg(metrics={"avg": "avg(x)", "max": "max(x)", "last": "last(x)", "n": "count()"})
    f.process([("t", BASE, r) for r in ({"x": 4}, {"x": "slow"}, {"x": True}, {}, {"x": None}, {"x": 2.0})])
    [(_, _, r)] = f.tick(BASE + 10 * S)
    assert (r["avg"], r["max"], r["n"], r["last"]) == (3.0, 4, 6, 2.0)
    c = f.ctx.counters
    assert (c["non_numeric.avg"], c["missing.avg"], c["non_numeric.max"], c["missing.max"]) == (2, 2, 2, 2)
    assert c["missing.last"] == 2 and "non_numeric.last" not in c


def test_nested_paths_as_norikra_writes_them_and_flattened():
    f, _ = agg(metrics={"rt": "avg(workers.$0.avg_rt)", "rt2": "avg(workers.1.avg_rt)", "q": "avg(s.q)"})
    f.process([("t", BASE, {"workers": [{"avg_rt": 10}, {"avg_rt": 1}], "s": {"q": 2}}),
               ("t", BASE, {"workers.0.avg_rt": 20, "workers": [], "s.q": 4})])  # flatten's output
    [(_, _, r)] = f.tick(BASE + 10 * S)
    assert (r["rt"], r["rt2"], r["q"]) == (15.0, 1.0, 3.0)
    assert f.ctx.counters["missing.rt2"] == 1


def test_groups_by_fields_and_tag_in_clock_aligned_windows():
    f, _ = agg(group_by=["tag", "k"], metrics={"n": "count()", "sum": "sum(v)"})
    events = [("a", BASE + 1 * S, {"k": 1, "v": 1}), ("a", BASE + 9 * S, {"k": 1, "v": 2}),
              ("b", BASE + 2 * S, {"k": 1, "v": 4}), ("a", BASE + 10 * S, {"k": 1, "v": 8}),
              ("a", BASE + 12 * S, {"k": [1], "v": 16})]  # a list value still makes a group
    f.process(events)
    first = {(r["tag"], r["window_start"]): r["sum"] for _, _, r in f.tick(BASE + 10 * S)}
    assert first == {("a", BASE // S): 3, ("b", BASE // S): 4}
    second = [r for _, _, r in f.tick(BASE + 20 * S)]
    assert sorted(((r["k"], r["sum"]) for r in second), key=str) == [(1, 8), ([1], 16)]


def test_sliding_windows_hold_each_event_in_window_over_every_windows():
    f, _ = agg(window="30s", every="10s", metrics={"n": "count()"})
    f.process([("t", BASE + 25 * S, {}), ("t", BASE + 5 * S, {})])
    out = sorted((r["window_start"] - BASE // S, r["window_end"] - BASE // S, r["n"])
                 for _, _, r in f.tick(BASE + 60 * S))
    assert out == [(-20, 10, 1), (-10, 20, 1), (0, 30, 2), (10, 40, 1), (20, 50, 1)]


def test_late_events_go_to_errors_and_are_counted():
    f, errors = agg(window="1s", metrics={"n": "count()"})
    now = time.time_ns()
    f.process([("t", now - 5 * S, {"x": 1}), ("t", now + 2 * S, {"x": 2})])
    assert f.ctx.counters["late"] == 1
    [(tag, _, record)] = errors
    assert tag == "pipeline.error.test" and record["kind"] == "late" and "'x': 1" in record["sample"]
    lenient, errors = agg(window="1s", allowed_lateness="1m", metrics={"n": "count()"})
    lenient.process([("t", now - 5 * S, {"x": 1})])
    assert not errors and lenient.tick(now + 2 * S) == []  # open until its end + 1 minute
    [(_, _, r)] = lenient.tick(now + 61 * S)
    assert r["n"] == 1


def test_arrival_time_ignores_event_times():
    f, errors = agg(window="1s", time="arrival", metrics={"n": "count()"})
    f.process([("t", 0, {}), ("t", BASE, {})])
    [(_, t, r)] = f.tick(time.time_ns() + 2 * S)
    assert not errors and r["n"] == 2 and abs(t - time.time_ns()) < 3 * S


def test_emit_empty_gives_count_zero_for_groups_seen_before():
    f, _ = agg(group_by=["k"], emit_empty=True, metrics={"n": "count()", "avg": "avg(v)"})
    f.process([("t", BASE, {"k": "a", "v": 1}), ("t", BASE + 20 * S, {"k": "a", "v": 3})])
    out = [(r["window_start"] - BASE // S, r["k"], r["n"], r["avg"]) for _, _, r in f.tick(BASE + 30 * S)]
    assert out[-3:] == [(0, "a", 1, 1.0), (10, "a", 0, None), (20, "a", 1, 3.0)]
    quiet, _ = agg(metrics={"n": "count()"})
    quiet.process([("t", BASE, {})])
    assert len(quiet.tick(BASE + 30 * S)) == 1


def roundtrip(f, **options):
    again, _ = agg(**options)
    again.load_state(msgpack.unpackb(msgpack.packb(f.save_state()), strict_map_key=False))
    return again


METRICS = {"n": "count()", "avg": "avg(v)", "sd": "stddev(v)", "p90": "p90(v)", "first": "first(v)",
           "last": "last(v)", "d": "count_distinct(v)", "mx": "max(v)"}


@pytest.mark.parametrize("group_by", [["k"], ["tag", "k"]])
def test_state_round_trip_continues_the_window(group_by):
    rng = random.Random(3)
    events = [("t", BASE + rng.randrange(10 * S), {"k": rng.choice("ab"), "v": rng.randrange(100)})
              for _ in range(1000)]
    whole, _ = agg(group_by=group_by, metrics=METRICS)
    whole.process(events)
    part, _ = agg(group_by=group_by, metrics=METRICS)
    part.process(events[:600])
    part = roundtrip(part, group_by=group_by, metrics=METRICS)
    part.process(events[600:])
    assert by_window(part.tick(BASE + 10 * S)) == by_window(whole.tick(BASE + 10 * S))


def test_state_of_other_settings_is_not_continued():
    f, _ = agg(metrics={"n": "count()"})
    f.process([("t", BASE, {})])
    other = roundtrip(f, metrics={"n": "count()", "s": "sum(v)"})
    assert other.windows == {} and other.ctx.counters["state_discarded"] == 1


def test_stop_keeps_the_open_window_unless_flush_on_stop(tmp_path):
    kept, _ = agg(metrics={"n": "count()"})
    kept.process([("t", BASE, {})])
    assert kept.flush() == [] and len(kept.save_state()["windows"]) == 1
    flushed, _ = agg(metrics={"n": "count()"}, flush_on_stop=True)
    flushed.process([("t", BASE, {})])
    [(_, _, r)] = flushed.flush()
    assert r["n"] == 1 and flushed.save_state()["windows"] == []


def test_max_groups_sends_further_groups_to_errors():
    f, errors = agg(group_by=["k"], max_groups=2, metrics={"n": "count()"})
    f.process([("t", BASE, {"k": k}) for k in "abcab"])
    assert len(errors) == 1 and f.ctx.counters["too_many_groups"] == 1
    assert sorted(r["n"] for _, _, r in f.tick(BASE + 10 * S)) == [2, 2]


DISTRIBUTIONS = {
    "uniform": lambda r: r.uniform(0, 1000),
    "normal": lambda r: r.gauss(0, 50),  # negative values too
    "exponential": lambda r: r.expovariate(1 / 30),
    "lognormal": lambda r: r.lognormvariate(-4, 2),  # latencies: a long tail
    "pareto": lambda r: r.paretovariate(1.2),
}
QUANTILES = {"p01": 0.01, "p10": 0.1, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p90": 0.9,
             "p95": 0.95, "p99": 0.99, "p999": 0.999, "p9999": 0.9999}


@pytest.mark.parametrize("accuracy", [0.01, 0.001])
@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_percentiles_within_the_documented_bound(name, accuracy):
    rng = random.Random(name)
    values = [DISTRIBUTIONS[name](rng) for _ in range(100_000)]
    f, _ = agg(percentile_accuracy=accuracy, metrics={q: f"{q}(v)" for q in QUANTILES})
    for i in range(0, len(values), 1000):
        f.process([("t", BASE, {"v": v}) for v in values[i:i + 1000]])
    [(_, _, r)] = f.tick(BASE + 10 * S)
    exact = sorted(values)
    for q, fraction in QUANTILES.items():
        truth = exact[math.floor(fraction * (len(exact) - 1))]
        assert abs(r[q] - truth) <= accuracy * abs(truth) * (1 + 1e-9), (q, r[q], truth)


def test_sketches_merge_to_the_sketch_of_all_values():
    rng = random.Random(5)
    a, b, both = (Sketch(Mapping(0.01)) for _ in range(3))
    xs = [rng.gauss(0, 10) for _ in range(5000)]
    a.add_many(xs[:2000])
    b.add_many(xs[2000:])
    both.add_many(xs)
    a.merge(b)
    assert [a.quantile(q / 10) for q in range(11)] == [both.quantile(q / 10) for q in range(11)]


def test_bins_are_capped():
    s = Sketch(Mapping(0.01, max_bins=100))
    s.add_many([1.05 ** i for i in range(1000)])
    assert len(s.pos) <= 100 and s.count == 1000
    assert s.quantile(1.0) == pytest.approx(1.05 ** 999, rel=0.01)


def test_check_refuses_bad_expressions_with_their_lines(tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("""sources:
  in: {type: stdin}
filters:
  agg:
    type: aggregate
    inputs: [in]
    group_by: [host, "a..b"]
    metrics:
      good: p99(rt)
      typo: avrg(rt)
      nofield: sum()
      badpath: max(workers.$x.rt)
      badq: percentile(rt, 120)
      notcall: rt
sinks:
  out: {type: stdout, inputs: [agg]}
""")
    result = run_pipeline("check", str(conf))
    assert result.returncode == 2
    err = result.stderr.decode()
    for line, text in [(7, "group_by[1]: bad field 'a..b'"), (10, "unknown function 'avrg' (did you mean 'avg'?)"),
                       (11, "sum takes one field"), (12, "'$x' is not a key or $N"),
                       (13, "between 0 and 100"), (14, "expected func(field)")]:
        assert f"bad.yaml:{line}: " in err and text in err, (line, text, err)
    assert ":9:" not in err


def test_once_runs_continue_the_window_and_emit_it_once_closed(tmp_path):
    conf = tmp_path / "agg.yaml"
    conf.write_text(f"""state_dir: {tmp_path / 'state'}
sources:
  in: {{type: stdin}}
filters:
  agg:
    type: aggregate
    inputs: [in]
    window: 3s
    time: arrival
    metrics: {{n: count(), total: sum(v)}}
sinks:
  out: {{type: stdout, inputs: [agg]}}
""")
    time.sleep(3 - time.time() % 3 + 0.05)  # at the start of a window: both runs fall in it

    def once(values):
        lines = "".join(json.dumps({"v": v}) + "\n" for v in values).encode()
        result = run_pipeline("run", "--once", str(conf), input=lines)
        assert result.returncode == 0, result.stderr.decode()
        return [json.loads(line) for line in result.stdout.splitlines()]

    assert once([1, 2]) == [] and once([3]) == []  # kept, not emitted half-full
    started = time.time() // 3 * 3
    time.sleep(started + 3 - time.time() + 0.1)
    [r] = once([100])  # the closed window first; the new event opens the next
    assert (r["n"], r["total"], r["window_start"]) == (3, 6, started)
