"""The rate machinery: resets, gaps, time that stands still, bounded series, saved state, RFC 3339."""

from __future__ import annotations

import pytest

from pipeline.engine.context import Context
from pipeline.metrics.rates import RateTracker, parse_rfc3339_ns

S = 1_000_000_000


def tracker(**kw):
    return RateTracker(Context("r", "filter").counters, **kw)


def test_first_sample_gives_none_then_rates():
    r = tracker()
    assert r.update(("k",), 100, 10 * S) is None
    assert r.update(("k",), 150, 20 * S) == 5.0
    assert r.update(("k",), 150, 21 * S) == 0.0
    assert tracker(per=60).update(("k",), 0, 0) is None


def test_per_minute():
    r = tracker(per=60)
    r.update(("k",), 0, 0)
    assert r.update(("k",), 30, 60 * S) == 30.0


@pytest.mark.parametrize("on_reset, expected", [("skip", None), ("from_zero", 2.0)])
def test_reset_never_gives_a_negative_rate(on_reset, expected):
    r = tracker(on_reset=on_reset)
    r.update(("k",), 1000, 0)
    assert r.update(("k",), 20, 10 * S) == expected
    assert r.update(("k",), 30, 20 * S) == 1.0  # the series goes on from the reset value
    assert r.counters["resets"] == 1


def test_time_that_does_not_advance():
    r = tracker()
    r.update(("k",), 10, 5 * S)
    assert r.update(("k",), 20, 5 * S) is None
    assert r.update(("k",), 20, 4 * S) is None
    assert r.update(("k",), 30, 15 * S) == 2.0  # against the sample kept (10 at 5 s)
    assert r.counters["time_not_advancing"] == 2


def test_gap_restarts_the_series():
    r = tracker(max_gap=60)
    r.update(("k",), 0, 0)
    assert r.update(("k",), 100, 61 * S) is None
    assert r.update(("k",), 110, 71 * S) == 1.0
    assert r.counters["gaps"] == 1


def test_series_are_bounded_and_the_longest_unseen_go_first():
    r = tracker(max_series=3)
    for i in range(3):
        r.update((i,), 0, 0)
    r.update((0,), 1, S)  # series 0 seen again: 1 is now the longest unseen
    r.update((3,), 0, S)
    assert set(r.series) == {(0,), (2,), (3,)}
    assert r.counters["series_evicted"] == 1


def test_state_round_trip_and_ttl():
    import time

    now = time.time_ns()
    r = tracker(state_ttl=3600)
    r.update(("t", "requests", 1), 100, now - 10 * S)
    r.update(("t", "requests", 2), 5, now - 7200 * S)  # older than the ttl
    state = r.save_state()
    import msgpack

    fresh = tracker(state_ttl=3600)
    fresh.load_state(msgpack.unpackb(msgpack.packb(state)))
    assert list(fresh.series) == [("t", "requests", 1)]
    assert fresh.update(("t", "requests", 1), 110, now) == pytest.approx(1.0)
    fresh.load_state({"something": "else"})  # a foreign state is ignored
    fresh.load_state(None)


@pytest.mark.parametrize("text, ns", [
    ("2023-11-14T22:13:20Z", 1700000000 * S),
    ("2023-11-14T22:13:20.5Z", 1700000000 * S + 500_000_000),
    ("2023-11-14T22:13:20.1234567Z", 1700000000 * S + 123_456_700),
    ("2023-11-14T22:13:20.123456789Z", 1700000000 * S + 123_456_789),
    ("2023-11-15T00:13:20.000000001+02:00", 1700000000 * S + 1),
    ("2023-11-14T17:13:20-0500", 1700000000 * S),
])
def test_rfc3339(text, ns):
    assert parse_rfc3339_ns(text) == ns


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00Z", "yesterday", "2023-13-45T99:00:00Z", ""])
def test_rfc3339_not_a_time(text):
    assert parse_rfc3339_ns(text) is None
