"""Serve the latest value of each numeric field on /metrics for a Prometheus server to scrape."""

from __future__ import annotations

import math
import re
import time
from fnmatch import fnmatchcase
from typing import Any

from ..event import Batch
from ..options import Duration, Int, ListOf, Option, Str
from ..plugin import Sink
from ..prometheus_text import escape_label

_BAD_NAME = re.compile(r"[^A-Za-z0-9_:]")
_BAD_LABEL = re.compile(r"[^A-Za-z0-9_]")

Series = tuple[tuple[str, str], ...]


def metric_name(*parts: str) -> str:
    name = _BAD_NAME.sub("_", "_".join(p for p in parts if p))
    return "_" + name if name[:1].isdigit() else name


def format_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v) if isinstance(v, float) else str(v)


def _numbers(record: dict, path: str, skip: set[str]):
    """(dotted path, value) of each number in the record, nested maps included."""
    for k, v in record.items():
        key = f"{path}.{k}" if path else str(k)
        if key in skip:
            continue
        if isinstance(v, dict):
            yield from _numbers(v, key, skip)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield key, v


def _lookup(record: dict, path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class PrometheusExporter(Sink):
    """Serve the latest value of each numeric field on /metrics, as gauges or counters."""

    options = (
        Option("bind", Str(), "127.0.0.1", "address to listen on (0.0.0.0 for every interface)"),
        Option("port", Int(min=0, max=65535), 9108, "TCP port of /metrics (0: any free port)"),
        Option("namespace", Str(), "", "prefix of every metric name (namespace_field)"),
        Option("labels", ListOf(Str()), [], "fields (dotted paths allowed) whose values become labels"),
        Option("tag_label", Str(), None, "put the event's tag in this label"),
        Option("fields", ListOf(Str()), [], "globs of the numeric fields to export (default: all)"),
        Option("counters", ListOf(Str()), [], "globs of the fields to type as counters (default: gauges)"),
        Option("expire", Duration(), 300.0, "drop a series not updated this long (0: never)"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        # metric name -> labels -> (value, monotonic time of the last update)
        self.series: dict[str, dict[Series, tuple[float, float]]] = {}
        self.types: dict[str, str] = {}
        self.port: int | None = None

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.conf.bind, self.conf.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the real port when port is 0
        self.ctx.log.info("serving /metrics on %s:%d", self.conf.bind, self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def write(self, batch: Batch) -> None:
        now = time.monotonic()
        conf = self.conf
        skip = set(conf.labels)
        for tag, _, record in batch:
            labels = [(_BAD_LABEL.sub("_", f), str(v)) for f in conf.labels
                      if (v := _lookup(record, f)) is not None]
            if conf.tag_label:
                labels.append((conf.tag_label, tag))
            key: Series = tuple(sorted(labels))
            for field, value in _numbers(record, "", skip):
                if conf.fields and not any(fnmatchcase(field, p) for p in conf.fields):
                    continue
                name = metric_name(conf.namespace, field)
                if name not in self.types:
                    counter = any(fnmatchcase(field, p) for p in conf.counters)
                    self.types[name] = "counter" if counter else "gauge"
                self.series.setdefault(name, {})[key] = (value, now)

    def render(self) -> str:
        expire = self.conf.expire
        cutoff = time.monotonic() - expire if expire else None
        out = []
        for name in sorted(self.series):
            by_labels = self.series[name]
            if cutoff is not None:
                for key in [k for k, (_, seen) in by_labels.items() if seen < cutoff]:
                    del by_labels[key]
            if not by_labels:
                continue
            out.append(f"# TYPE {name} {self.types[name]}\n")
            for key, (value, _) in by_labels.items():
                labels = ",".join(f'{k}="{escape_label(v)}"' for k, v in key)
                out.append(f"{name}{{{labels}}} {format_value(value)}\n" if labels
                           else f"{name} {format_value(value)}\n")
        return "".join(out)

    async def _metrics(self, request):
        from aiohttp import web

        return web.Response(body=self.render().encode(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


PLUGIN = PrometheusExporter
