"""Source `prometheus`: scrape a Prometheus /metrics endpoint (node_exporter, client libraries)."""

from __future__ import annotations

import http.client
import ssl
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from ..codecs.http import MAX_BYTES_OPTION, TLS_OPTIONS, Client, HTTPError, check, reason
from ..codecs.prometheus_text import ParseError, Sample, parse
from ..config.addresses import URL
from ..config.options import Duration, Enum, ListOf, MapOf, Option, Str
from ..event import Batch, Record, now_ns
from ..plugin import PollSource

ACCEPT = ("application/openmetrics-text;version=1.0.0;q=0.9,"
          "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


class PrometheusSource(PollSource):
    """Scrape a Prometheus text (0.0.4) or OpenMetrics endpoint.

    `mode: samples`: one record per series: `name`, `labels`, `value`, `type`.
    `mode: grouped`: one record per label set, the metric names as fields; e.g. one record per
    (cpu, mode) with `node_cpu_seconds_total`, which the rate filter (`group_by: [cpu, mode]`)
    turns into what `rate(node_cpu_seconds_total[10s])` shows in Prometheus.
    NaN and +/-Inf are kept as floats (JSON output writes them as null).
    """

    options = (
        Option("url", URL("http", "https"), help="the /metrics URL: http://host:port/metrics or https://"),
        Option("mode", Enum("samples", "grouped"), "samples", "one record per series, or per label set"),
        Option("metrics", ListOf(Str()), ["*"], "glob patterns of metric names to keep"),
        Option("exclude", ListOf(Str()), [], "glob patterns of metric names to drop"),
        Option("timeout", Duration(min=0.001), 5.0, "connect and read timeout"),
        Option("headers", MapOf(Str(numbers=True)), {}, "request headers, e.g. Authorization", secret=True),
        Option("tls", TLS_OPTIONS, {}, "https: {ca, cert, key, verify}"),
        MAX_BYTES_OPTION,
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        url = urlsplit(conf.url)
        self.client = Client(f"{url.scheme}://{url.netloc}", conf.timeout, conf.tls, conf.max_bytes)
        self.target = url.path + (f"?{url.query}" if url.query else "") or "/metrics"
        self._keep: dict[str, bool] = {}

    def keep(self, name: str) -> bool:
        hit = self._keep.get(name)
        if hit is None:
            hit = any(fnmatchcase(name, p) for p in self.conf.metrics) and \
                not any(fnmatchcase(name, p) for p in self.conf.exclude)
            self._keep[name] = hit
        return hit

    async def poll(self) -> Batch:
        started = now_ns()
        url = self.conf.url
        headers = {"Accept": ACCEPT, "Accept-Encoding": "gzip", **self.conf.headers}
        try:
            response = await self.client.request("GET", self.target, headers)
            body = check(response)  # inflated already, if gzip
            self.ctx.counters["bytes_in"] += len(body)
            openmetrics = "openmetrics" in (response.headers.get("Content-Type") or "")
            samples, _ = parse(body.decode("utf-8", "replace"), openmetrics)
        except ParseError as e:
            self.ctx.health("scrape", False, f"{url}: not the Prometheus text format: {e}", count=False)
            self.ctx.error(f"not the Prometheus text format: {e}", origin=url, log=False)
            return []
        except (OSError, TimeoutError, HTTPError, http.client.HTTPException, ssl.SSLError) as e:
            self.ctx.health("scrape", False, f"cannot scrape {url}: {reason(e)}")
            return []
        self.ctx.health("scrape", True, f"{url} scrapes again")
        samples = [s for s in samples if self.keep(s.name)]
        if self.conf.mode == "grouped":
            return [self.event(r, started) for r in grouped(samples)]
        return [self.event(as_record(s), s.timestamp_ns or started) for s in samples]


def as_record(s: Sample) -> Record:
    return {"name": s.name, "labels": s.labels, "value": s.value, "type": s.type}


def grouped(samples: list[Sample]) -> list[Record]:
    groups: dict[tuple, Record] = {}
    for s in samples:
        key = tuple(sorted(s.labels.items()))
        record = groups.get(key)
        if record is None:
            record = groups[key] = dict(s.labels)
        record[s.name] = s.value
    return list(groups.values())


PLUGIN = PrometheusSource
