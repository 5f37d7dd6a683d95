"""Sink `prometheus_remote_write`: metrics records pushed to Prometheus, VictoriaMetrics,
Mimir, Thanos or any remote-write receiver."""

from __future__ import annotations

import base64
import http.client
from urllib.parse import urlsplit

from .. import __version__
from ..codecs import remote_write as rw
from ..codecs.http import TLS_OPTIONS, Client, HTTPError, reason, retry_after, retryable
from ..codecs.prometheus_names import SERIES_OPTIONS, SeriesNames, check_labels, label_name
from ..codecs.quote import quoted
from ..config.addresses import URL
from ..config.options import Bool, Duration, MapOf, Option, Str
from ..event import Batch
from ..metrics.rates import time_ns
from ..plugin import DataError, RetryLater, Sink

#: what a receiver's answer is read to, for the log and `_errors`
MAX_ANSWER = 64 * 1024
#: encoded label sets kept between writes; past it the cache starts again
MAX_CACHED_SERIES = 100_000


class PrometheusRemoteWriteSink(Sink):
    """POST each batch as a remote-write request (protobuf `WriteRequest`, snappy block framed).

    Fields and labels are declared as for `prometheus_exporter`: each numeric field matching
    `fields` is a series (`prefix` + the field; `counters` get `_total`), the `labels` fields
    its labels, `static_labels` added to every series (job, instance: nothing scrapes these
    samples to add them). A sample's time is the event time, or `time_field`'s (RFC 3339 or
    epoch seconds) to write recorded data at its own time. Each request also carries every
    metric's type and help (`metadata`).

    A connection error, a timeout, 5xx, 429, and 401, 403, 404, 405, 407, 408 (a token, a
    path or a receiver to fix, not the data) are retried with backoff, or after the wait a
    Retry-After asks for. Any other 4xx refuses the data: the batch is split until the
    refused records are found, and they go to `_errors` with the server's answer.
    """

    options = (
        Option("url", URL("http", "https"), help="the receiver, e.g. http://127.0.0.1:9090/api/v1/write"),
        *SERIES_OPTIONS,
        Option("static_labels", MapOf(Str(numbers=True)), {}, "labels added to every series, e.g. {job: app}"),
        Option("time_field", Str(), None,
               "take the sample time from this field (RFC 3339 or epoch seconds) instead of the event "
               "time, where a record has it"),
        Option("metadata", Bool(), True, "send each metric's type (counter or gauge) and help"),
        Option("headers", MapOf(Str(numbers=True)), {}, "request headers, e.g. X-Scope-OrgID", secret=True),
        Option("bearer_token", Str(), None, "sent as `Authorization: Bearer TOKEN`", secret=True),
        Option("username", Str(), None, "basic auth user"),
        Option("password", Str(), None, "basic auth password", secret=True),
        Option("tls", TLS_OPTIONS, {}, "https: {ca, cert, key, verify}"),
        Option("timeout", Duration(min=0.001), 30.0, "connect and answer timeout of each request"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        url = urlsplit(conf.url)
        self.client = Client(f"{url.scheme}://{url.netloc}", conf.timeout, conf.tls, MAX_ANSWER)
        self.target = url.path + (f"?{url.query}" if url.query else "") or "/"
        self.names = SeriesNames(conf, ctx.id, conf.inputs)
        self.static = {label_name(k): v for k, v in conf.static_labels.items() if v != ""}
        self.headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
                        "X-Prometheus-Remote-Write-Version": "0.1.0", "User-Agent": f"pipeline/{__version__}"}
        if conf.bearer_token is not None:
            self.headers["Authorization"] = f"Bearer {conf.bearer_token}"
        elif conf.username is not None:
            pair = f"{conf.username}:{conf.password or ''}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self.headers.update(conf.headers)
        #: (metric, record labels) -> its encoded TimeSeries.labels
        self._labels: dict[tuple[str, rw.Labels], bytes] = {}

    @classmethod
    def fields(cls, conf, upstream, check):
        check_labels(conf, upstream, check)
        return None

    def encode(self, batch: Batch) -> bytes:
        """The WriteRequest of a batch, uncompressed; b"" when no record holds a value."""
        names, field = self.names, self.conf.time_field
        series: dict[tuple[str, rw.Labels], list[tuple[int, bytes, float]]] = {}
        for _, t, record in batch:
            if field is not None:
                t = time_ns(record.get(field)) or t
            ms = t // 1_000_000
            stamp = rw.timestamp(ms)
            key = names.labels(record)
            for name, value in names.values(record):
                series.setdefault((name, key), []).append((ms, stamp, value))
        if len(self._labels) > MAX_CACHED_SERIES:
            self._labels.clear()
        parts = []
        for name_key, samples in series.items():
            encoded = self._labels.get(name_key)
            if encoded is None:
                name, key = name_key
                merged = {**self.static, **dict(key), "__name__": name}  # the record's label wins
                encoded = self._labels[name_key] = rw.labels(tuple(merged.items()))
            parts.append(rw.timeseries(encoded, samples))
        if parts and self.conf.metadata:
            for name in {name for name, _ in series}:
                parts.append(rw.metadata(name, names.types[name], names.helps[name]))
        return b"".join(parts)

    async def write(self, batch: Batch) -> None:
        request = self.encode(batch)  # a record that cannot be encoded fails here, nothing sent
        if not request:
            return
        body = rw.snappy_block(request)
        try:
            response = await self.client.request("POST", self.target, self.headers, body)
        except (HTTPError, http.client.HTTPException) as e:  # a garbled or oversized answer
            raise ConnectionError(f"{self.conf.url}: {reason(e)}") from None
        if 200 <= response.status < 300:
            self.ctx.counters["bytes_out"] += len(body)
            return
        answer = response.body.strip()
        why = f"{self.conf.url} answered HTTP {response.status}" + (f": {quoted(answer)}" if answer else "")
        if retryable(response.status):
            raise RetryLater(why, retry_after(response.headers))
        raise DataError(why)


PLUGIN = PrometheusRemoteWriteSink
