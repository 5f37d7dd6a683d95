"""What an HTTP sink makes of an answer: which statuses are retried, and the wait Retry-After
asks for (the integration through real servers is in tests/sinks/test_prometheus_remote_write.py)."""

from __future__ import annotations

import email.utils
import http.client
import io
import time

from pipeline.codecs.http import retry_after, retryable


def headers(lines: str) -> http.client.HTTPMessage:
    return http.client.parse_headers(io.BytesIO(lines.encode() + b"\r\n"))


def test_retry_after_in_seconds_or_as_an_http_date():
    assert retry_after(headers("Retry-After: 120\r\n")) == 120
    later = email.utils.formatdate(time.time() + 600, usegmt=True)
    assert 500 < retry_after(headers(f"Retry-After: {later}\r\n")) <= 600
    assert retry_after(headers("Retry-After: Thu, 01 Jan 2015 00:00:00 GMT\r\n")) == 0  # past: now
    assert retry_after(headers("Retry-After: soon\r\n")) is None
    assert retry_after(headers("")) is None


def test_the_4xx_about_the_destination_are_retried_the_others_refuse_the_data():
    assert [s for s in range(400, 600) if retryable(s)] == [401, 403, 404, 405, 407, 408, 425, 429, *range(500, 600)]
