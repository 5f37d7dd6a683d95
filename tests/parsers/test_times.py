"""Event times as fluentd, Fluent Bit and containerd write them: formats without a year,
fractions past microseconds, fluentd's %N and %L (issue 21, points 12 and 13)."""

from __future__ import annotations

from datetime import datetime

import pytest
from helpers import run_pipeline

from pipeline.parsers._time import TimeError, parser_of

JANUARY = datetime(2027, 1, 2, 10, 0, 0).timestamp()
MAY = datetime(2026, 5, 1).timestamp()


def utc(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(datetime.fromisoformat(whole + "+00:00").timestamp()) * 10**9 + int(frac.ljust(9, "0") or 0)


@pytest.mark.parametrize("fmt, text, expected", [
    ("%b %d %H:%M:%S", "Feb 28 12:00:00", "2026-02-28T12:00:00"),
    ("%m/%d %H:%M:%S", "12/31 23:59:00", "2026-12-31T23:59:00"),
    ("%d/%b %H:%M", "09/Oct 13:55", "2026-10-09T13:55:00"),
    ("%b %d %H:%M:%S.%L", "Feb 16 04:06:58.1234", "2026-02-16T04:06:58.1234"),
])
def test_a_format_without_a_year_takes_this_year(fmt, text, expected):
    assert parser_of(fmt, "UTC", clock=lambda: MAY)(text) == utc(expected)


def test_a_december_line_read_in_january_is_from_last_year_in_every_format():
    for fmt, text in (("%b %d %H:%M:%S", "Dec 31 23:59:58"), ("%m/%d %H:%M:%S", "12/31 23:59:58"),
                      ("syslog", "Dec 31 23:59:58")):
        assert parser_of(fmt, "UTC", clock=lambda: JANUARY)(text) == utc("2026-12-31T23:59:58"), fmt
    assert parser_of("%m/%d %H:%M:%S", "UTC", clock=lambda: JANUARY)("01/02 09:00:00") == utc("2027-01-02T09:00:00")


def test_feb_29_without_a_year_is_read_in_a_leap_year_only():
    leap = datetime(2028, 3, 1).timestamp()
    assert parser_of("%b %d %H:%M:%S", "UTC", clock=lambda: leap)("Feb 29 12:00:00") == utc("2028-02-29T12:00:00")
    with pytest.raises(TimeError, match="is not a day of 2026"):
        parser_of("%b %d %H:%M:%S", "UTC", clock=lambda: MAY)("Feb 29 12:00:00")


@pytest.mark.parametrize("fmt, text, expected", [
    ("%Y-%m-%d %H:%M:%S.%f", "2016-09-02 18:42:31.123456789", "2016-09-02T18:42:31.123456789"),
    ("%Y-%m-%d %H:%M:%S.%N", "2016-09-02 18:42:31.123456789", "2016-09-02T18:42:31.123456789"),
    ("%Y-%m-%d %H:%M:%S.%9N", "2016-09-02 18:42:31.000000001", "2016-09-02T18:42:31.000000001"),
    ("%Y-%m-%d %H:%M:%S.%6N", "2016-09-02 18:42:31.123456", "2016-09-02T18:42:31.123456"),
    ("%Y-%m-%d %H:%M:%S.%3N", "2016-09-02 18:42:31.123", "2016-09-02T18:42:31.123"),
    ("%Y-%m-%d %H:%M:%S.%L", "2016-09-02 18:42:31.123", "2016-09-02T18:42:31.123"),
    ("%Y-%m-%dT%H:%M:%S.%L%z", "2023-10-10T15:55:36.123456789+02:00", "2023-10-10T13:55:36.123456789"),
    ("%Y-%m-%d %H:%M:%S,%L", "2016-09-02 18:42:31,5", "2016-09-02T18:42:31.5"),
    ("%Y-%m-%d %H:%M:%S.%N", "2016-09-02 18:42:31", "2016-09-02T18:42:31"),  # Go leaves a zero out
    ("%m/%d/%Y %H:%M:%S.%L", "10/03/2016 12:21:08.1234567891234", "2016-10-03T12:21:08.123456789"),
    ("%Y%m%d%H%M%S.%N", "20160902184231.5", "2016-09-02T18:42:31.5"),  # a compact date is no fraction
    ("%Y%m%d%H%M%S.%N", "20160902184231.123456789", "2016-09-02T18:42:31.123456789"),
    ("iso8601", "2016-09-02T18:42:31.123456789Z", "2016-09-02T18:42:31.123456789"),
    ("iso8601", "2016-09-02T20:42:31.000000007+02:00", "2016-09-02T18:42:31.000000007"),
    ("syslog", "2016-09-02T18:42:31.987654321Z", "2016-09-02T18:42:31.987654321"),
])
def test_fractions_are_kept_to_the_nanosecond(fmt, text, expected):
    assert parser_of(fmt, "UTC")(text) == utc(expected)


def test_check_takes_fluentds_fraction_directives_and_run_keeps_nanoseconds(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("sources:\n  in:\n    type: stdin\n    format:\n      type: regex\n"
                    "      pattern: '^(?P<time>\\S+ \\S+) (?P<message>.*)'\n      time_key: time\n"
                    "      time_format: '%Y-%m-%d %H:%M:%S.%N'\n      timezone: UTC\n"
                    "sinks:\n  out: {type: stdout, inputs: [in], time_key: t, time_format: iso8601}\n"
                    "  err: {type: stdout, inputs: [_errors]}\n")
    assert run_pipeline("check", str(conf)).returncode == 0
    result = run_pipeline("run", "--once", str(conf), input=b"2016-09-02 18:42:31.123456789 containerd says hi\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == '{"message":"containerd says hi","t":"2016-09-02T18:42:31.123456789Z"}'
