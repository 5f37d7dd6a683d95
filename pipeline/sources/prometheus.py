"""Scrape a Prometheus (text 0.0.4 or OpenMetrics) endpoint such as node_exporter's /metrics."""

from __future__ import annotations

from fnmatch import fnmatchcase

from ..event import Batch, Record, now_ns
from ..options import Enum, ListOf, Option, Str
from ..prometheus_text import Exposition, parse
from ._http import HTTP_OPTIONS, HttpPollSource


def select(exposition: Exposition, include: list[str], exclude: list[str]) -> list:
    return [s for s in exposition.samples
            if (not include or any(fnmatchcase(s.name, p) for p in include))
            and not any(fnmatchcase(s.name, p) for p in exclude)]


class Prometheus(HttpPollSource):
    """Scrape a Prometheus text or OpenMetrics endpoint: one record per series, or per label set."""

    # offer OpenMetrics first, as Prometheus itself does; the text format is the fallback
    default_headers = {"Accept": "application/openmetrics-text;version=1.0.0,"
                                 "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"}
    options = HTTP_OPTIONS + (
        Option("mode", Enum("samples", "grouped"), "samples",
               "samples: a record per series; grouped: a record per label set, metric names as fields"),
        Option("metrics", ListOf(Str()), [], "globs of metric names to keep (default: all)"),
        Option("exclude", ListOf(Str()), [], "globs of metric names to drop"),
    )

    async def poll(self) -> Batch:
        got = await self.fetch()
        if got is None:
            return []
        body, content_type = got
        exposition = parse(body.decode("utf-8", "replace"),
                           openmetrics=content_type.startswith("application/openmetrics-text"))
        for line, message in exposition.errors:
            self.ctx.error(f"line {line}: {message}", origin=self.conf.url, kind="bad_line")
        samples = select(exposition, self.conf.metrics, self.conf.exclude)
        now = now_ns()
        if self.conf.mode == "samples":
            return [self.event({"name": s.name, "labels": s.labels, "value": s.value, "type": s.type},
                               s.time_ns or now) for s in samples]
        groups: dict[tuple, Record] = {}
        for s in samples:
            key = tuple(sorted(s.labels.items()))
            record = groups.get(key)
            if record is None:
                record = groups[key] = dict(s.labels)
            record[s.name] = s.value
        return [self.event(r, now) for r in groups.values()]


PLUGIN = Prometheus
