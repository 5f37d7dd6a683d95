"""Typed options: durations, sizes and the errors for values that are not."""

import pytest

from pipeline.options import Duration, Errors, Invalid, Size


@pytest.mark.parametrize("text, seconds", [
    ("10s", 10.0), ("500ms", 0.5), ("1m", 60.0), ("1.5m", 90.0), ("2h", 7200.0), ("1d", 86400.0),
    ("250us", 0.00025), (3, 3.0), (0.25, 0.25), (" 5 s ", 5.0),
])
def test_durations(text, seconds):
    assert Duration().convert(text, "x", Errors(), None) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["10 parsecs", "", "s", "-1s", True, [1], -2])
def test_bad_durations(value):
    with pytest.raises(Invalid):
        Duration().convert(value, "x", Errors(), None)


@pytest.mark.parametrize("text, size", [
    ("64KiB", 65536), ("256MiB", 256 * 1024**2), ("1GB", 10**9), ("10k", 10_000), (4096, 4096), ("1.5KiB", 1536),
])
def test_sizes(text, size):
    assert Size().convert(text, "x", Errors(), None) == size


@pytest.mark.parametrize("value", ["12 potatoes", "MiB", True, -5, "1.2.3KiB"])
def test_bad_sizes(value):
    with pytest.raises(Invalid):
        Size().convert(value, "x", Errors(), None)
