"""Sink `http`: records POSTed to a URL (fluentd's out_http, Vector's http sink), as NDJSON,
a JSON array, msgpack or InfluxDB line protocol."""

from __future__ import annotations

import asyncio
import gzip
from urllib.parse import quote, urlsplit

from ..codecs.encode import TIME_FORMATS, Encoder, encode_influx
from ..codecs.http import Client
from ..config.addresses import URL
from ..config.options import Enum, Invalid, ListOf, Option, Str
from ..event import Batch
from ..plugin import DataError, Sink
from ._http import CLIENT_OPTIONS, client_headers, send

CONTENT_TYPES = {"ndjson": "application/x-ndjson", "json": "application/json", "msgpack": "application/msgpack",
                 "influx": "text/plain; charset=utf-8"}


class _URL(URL):
    """The sink's url: `${tag}` in its path or query, never in the host it goes to."""

    def convert(self, value, path, errors, node):
        value = super().convert(value, path, errors, node)
        if "${tag}" in urlsplit(value).netloc:
            raise Invalid("${tag} may be in the url's path or query, not in its host")
        return value


class HttpSink(Sink):
    """POST (or PUT) each chunk of events to a URL: fluentd's out_http, Vector's http sink.

    `format`: ndjson (one JSON object a line), json (an array), msgpack (maps back to back)
    or influx (InfluxDB line protocol: `measurement`, `tag_keys` as tags, the numbers and
    booleans as fields; what VictoriaMetrics' and InfluxDB's /write take). `${tag}` in the
    url is the event's tag as one %-encoded path segment (no `/`, `?`, `#` or `..` can come
    of it), one request per tag. A 2xx answer is success. Connection errors, timeouts, 5xx,
    429, 408 and the auth statuses (401, 403, 407) are retried with backoff, waiting at least
    what a Retry-After says (up to `retry_max_interval`); any other 4xx refuses the data: the
    chunk is split in halves until the refused records are found, which go to `_errors` with
    the server's answer, the rest written. Connections are kept alive between writes.
    """

    options = (
        Option("url", _URL("http", "https"), help="http:// or https:// URL; ${tag} is the event's tag"),
        Option("method", Enum("POST", "PUT"), "POST", "request method"),
        Option("format", Enum(*CONTENT_TYPES), "ndjson", "ndjson, json (an array), msgpack or influx"),
        Option("compress", Enum("none", "gzip"), "none", "gzip: Content-Encoding: gzip"),
        *CLIENT_OPTIONS,
        Option("tag_key", Str(), None, "json/msgpack: add the tag to each record under this key"),
        Option("time_key", Str(), None, "json/msgpack: add the time to each record under this key"),
        Option("time_format", Enum(*TIME_FORMATS), "float", "time_key's format: unix, float or iso8601"),
        Option("measurement", Str(), None, "influx: the measurement (default: the event's tag)"),
        Option("tag_keys", ListOf(Str()), [], "influx: record fields written as tags, not fields"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        url = urlsplit(conf.url)
        self.shown = url._replace(netloc=url.netloc.rpartition("@")[2]).geturl()  # no password in a log line
        # answers are read whole (16MiB at most) so that the connection can be used again
        self.client = Client(f"{url.scheme}://{url.netloc.rpartition('@')[2]}", conf.timeout, conf.tls,
                             keepalive=True)
        self.target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self.by_tag = "${tag}" in self.target
        self.encoder = Encoder("msgpack" if conf.format == "msgpack" else "json", conf.tag_key, conf.time_key,
                               conf.time_format)
        self.headers = client_headers(conf, {"Content-Type": CONTENT_TYPES[conf.format],
                                             **({"Content-Encoding": "gzip"} if conf.compress == "gzip" else {})})

    async def write(self, batch: Batch) -> None:
        # everything encoded before anything is sent: a record that cannot be is named
        # while nothing of the batch is written yet (DataError's contract)
        requests = [(target, events, self._encode(events)) for target, events in self._targets(batch)]
        written: Batch = []
        for target, events, body in requests:
            if self.conf.compress == "gzip":
                body = await asyncio.to_thread(gzip.compress, body, 6)
            try:
                await send(self.client, self.conf.method, target, self.headers, body,
                           self.shown if not self.by_tag else f"{self.shown} ({target})")
            except DataError as e:
                e.written = written  # those are not sent again while the refused ones are sought
                raise
            self.ctx.counters["bytes_out"] += len(body)
            written += events

    def _targets(self, batch: Batch) -> list[tuple[str, Batch]]:
        if not self.by_tag:
            return [(self.target, batch)]
        groups: dict[str, Batch] = {}
        for event in batch:
            groups.setdefault(event[0], []).append(event)
        return [(self.target.replace("${tag}", _segment(tag)), events) for tag, events in groups.items()]

    def _encode(self, events: Batch) -> bytes:
        fmt = self.conf.format
        if fmt == "influx":
            body, empty = encode_influx(events, self.conf.measurement, self.conf.tag_keys)
            if empty:
                raise DataError("no number or boolean to write as a line protocol field", empty)
            return body
        body = self.encoder.encode(events)
        if fmt == "json":  # JSON lines hold no raw newline: each line is one element
            return b"[" + body.rstrip(b"\n").replace(b"\n", b",") + b"]"
        return body

    async def stop(self) -> None:
        self.client.close()


def _segment(tag: str) -> str:
    """A tag as one path segment: %-encoded, and `.` or `..` made literal dots."""
    part = quote(tag, safe="")
    return part.replace(".", "%2E") if part in (".", "..") else part


PLUGIN = HttpSink
