"""Sink `prometheus_exporter`: serve the latest numbers as a Prometheus /metrics page."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from ..codecs.prometheus_names import SERIES_OPTIONS, SeriesNames, check_labels
from ..config.options import Duration, Int, Option, Str
from ..event import Batch
from ..plugin import Sink


def _help_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_value(value: Any) -> str:
    return _help_text(str(value)).replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value) if isinstance(value, float) else str(value)


class PrometheusExporterSink(Sink):
    """Serve `/metrics` with the latest value of each numeric field of the events.

    Each numeric top-level field becomes a metric (`prefix` + the field name, characters
    outside [a-zA-Z0-9_:] as `_`); the values of the `labels` fields (e.g. container_name,
    worker_id) become its labels. Fields matching `counters` are typed counter, the rest gauge.
    A counter's name ends in `_total` (added when the field's name lacks it), as Prometheus
    names counters. Each metric's `# HELP` names its field and this sink's inputs, so
    `promtool check metrics` passes. A series that stops arriving is dropped after `expire`.
    So a Prometheus server can scrape the numbers the pipeline derives (Docker CPU%, uWSGI
    per-worker rates).
    """

    options = (
        Option("bind", Str(), "127.0.0.1", "address to listen on"),
        Option("port", Int(min=0, max=65535), 9464, "port to listen on"),
        *SERIES_OPTIONS,
        Option("expire", Duration(min=0.001), 300.0, "drop a series not seen for this long"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        # (metric, label items) -> (value, last seen)
        self.series: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, float]] = {}
        self.names = SeriesNames(conf, ctx.id, conf.inputs)
        self.server: asyncio.Server | None = None
        self.port: int = conf.port

    @classmethod
    def fields(cls, conf, upstream, check):
        check_labels(conf, upstream, check)
        return None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.conf.bind, self.conf.port)
        self.port = self.server.sockets[0].getsockname()[1]
        self.ctx.log.info("serving /metrics on %s:%d", self.conf.bind, self.port)

    async def write(self, batch: Batch) -> None:
        now = time.monotonic()
        names = self.names
        for _, _, record in batch:
            key = names.labels(record)
            for name, value in names.values(record):
                self.series[(name, key)] = (value, now)

    def render(self) -> str:
        cutoff = time.monotonic() - self.conf.expire
        for key in [k for k, (_, seen) in self.series.items() if seen < cutoff]:
            del self.series[key]
        by_name: dict[str, list[str]] = {}
        for (name, labels), (value, _) in sorted(self.series.items()):
            text = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels)
            by_name.setdefault(name, []).append(f"{name}{{{text}}} {_number(value)}" if text
                                                else f"{name} {_number(value)}")
        lines = []
        for name, samples in by_name.items():
            lines.append(f"# HELP {name} {_help_text(self.names.helps[name])}")
            lines.append(f"# TYPE {name} {self.names.types[name]}")
            lines += samples
        return "\n".join(lines) + "\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            parts = head.split(b"\r\n", 1)[0].split()
            path = parts[1].split(b"?")[0] if len(parts) >= 2 else b""
            if parts[:1] == [b"GET"] and path == b"/metrics":
                status, body = b"200 OK", self.render().encode()
                kind = b"text/plain; version=0.0.4; charset=utf-8"
            else:
                status, body, kind = b"404 Not Found", b"only /metrics is here\n", b"text/plain"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + kind + b"\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


PLUGIN = PrometheusExporterSink
