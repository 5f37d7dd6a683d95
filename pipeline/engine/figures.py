"""The running pipeline's figures, read from what the runtime keeps (contexts' counters,
sink runners and their buffers): as Prometheus families, and as records for the
internal_metrics source. Reading never changes anything and never calls a plugin.
"""

from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config.graph import Component, Graph, topological
from ..metrics.histogram import Histogram

if TYPE_CHECKING:
    from .context import Context
    from .runtime import Runtime
    from .sink_runner import SinkRunner

#: counter -> (family, help, the kinds of component it is shown for)
COUNTERS = (
    ("events_in", "pipeline_component_received_events_total", "events the component took in",
     ("filter", "sink")),
    ("events_out", "pipeline_component_sent_events_total",
     "events the component emitted (a sink: wrote)", ("source", "filter", "sink")),
    ("bytes_in", "pipeline_component_received_bytes_total", "bytes a source read", ("source",)),
    ("bytes_out", "pipeline_component_sent_bytes_total", "bytes a sink wrote", ("sink",)),
    ("writes", "pipeline_sink_writes_total", "writes that succeeded", ("sink",)),
    ("retries", "pipeline_sink_retries_total", "writes that failed and are retried", ("sink",)),
    ("given_up", "pipeline_sink_given_up_events_total",
     "events given up after retry_timeout (sent to the errors output)", ("sink",)),
    ("dropped_overflow", "pipeline_buffer_dropped_events_total",
     "events the buffer's overflow policy dropped", ("sink",)),
    ("skipped_polls", "pipeline_source_skipped_ticks_total",
     "ticks skipped because a poll took longer than the interval", ("poll",)),
    ("connections", "pipeline_forward_accepted_connections_total", "connections accepted",
     ("forward",)),
)
#: gauge a component sets -> (family, help, labels); a gauge with labels is a map of their
#: values (a tuple) to its value
GAUGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "connections": ("pipeline_forward_open_connections", "connections open now", ()),
    "files": ("pipeline_tail_files", "files a tail source follows now", ()),
    "bytes_behind": ("pipeline_tail_behind_bytes",
                     "bytes between what a tail source has read and the end of its files", ()),
    "consumer_lag": ("pipeline_kafka_consumer_lag",
                     "records of a partition past the group's committed offset", ("topic", "partition")),
    "producer_queue": ("pipeline_kafka_producer_queue", "records produced that the broker has not acked yet", ()),
}
#: timing the runtime observes -> (family, help, kinds)
TIMINGS = (
    ("write_duration_seconds", "pipeline_sink_write_duration_seconds",
     "time a write that succeeded took", ("sink",)),
    ("poll_duration_seconds", "pipeline_source_poll_duration_seconds", "time a poll took", ("poll",)),
)
LABELS = ("component_id", "component_type", "component_kind")


@dataclass
class Family:
    name: str
    type: str
    help: str
    #: (name suffix, labels, value)
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, labels: dict[str, str], value: float, suffix: str = "") -> None:
        self.samples.append((suffix, labels, value))

    def add_histogram(self, labels: dict[str, str], h: Histogram) -> None:
        for bound, n in h.cumulative():
            self.add({**labels, "le": "+Inf" if math.isinf(bound) else repr(bound)}, n, "_bucket")
        self.add(labels, h.sum, "_sum")
        self.add(labels, h.count, "_count")


@dataclass
class Part:
    """One component as the api sees it."""

    comp: Component
    ctx: Context
    runner: SinkRunner | None

    @property
    def labels(self) -> dict[str, str]:
        return {"component_id": self.comp.id, "component_type": self.comp.conf.type,
                "component_kind": self.comp.kind}

    @property
    def roles(self) -> set[str]:
        """The component's kind, and what else picks its figures: poll, forward."""
        roles = {self.comp.kind}
        if self.comp.kind == "source":
            if hasattr(self.comp.conf, "interval"):
                roles.add("poll")
            if self.comp.conf.type == "forward":
                roles.add("forward")
        return roles


class Figures:
    """The running graph as the api and the internal_metrics source see it: read-only figures
    and config, and the taps that copy what a component emits. The engine hands this out so
    that nothing outside it needs the runtime itself."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @property
    def graph(self) -> Graph:
        """The config running now (a reload replaces it)."""
        return self.runtime.graph

    @property
    def taps(self) -> dict[str, list[Any]]:
        """Component id -> what reads a copy of every batch it emits: each has offer(producer,
        batch) and close(); the api adds and removes its taps and charts here."""
        return self.runtime.taps

    def parts(self) -> list[Part]:
        """Every component, in the graph's order: sources, filters inputs first, sinks."""
        graph = self.runtime.graph
        comps = graph.of_kind("source") + topological(graph) + graph.of_kind("sink")
        nodes = self.runtime.nodes
        return [Part(c, self.runtime.contexts[c.id], nodes[c.id].runner if c.id in nodes else None)
                for c in comps if c.id in self.runtime.contexts]

    def families(self) -> list[Family]:
        parts = self.parts()
        out: list[Family] = []
        for counter, name, help, kinds in COUNTERS:
            fam = Family(name, "counter", help)
            for p in parts:
                if p.roles.intersection(kinds):
                    fam.add(p.labels, p.ctx.counters[counter])
            out.append(fam)
        errors = Family("pipeline_component_errors_total", "counter",
                        "bad input and failures, by kind (error_kind)")
        for p in parts:
            by_kind = dict(p.ctx.error_kinds)
            unkinded = p.ctx.counters["errors"] - sum(by_kind.values())
            if unkinded > 0:
                by_kind["other"] = unkinded
            for error_kind, n in sorted(by_kind.items()):
                errors.add({**p.labels, "error_kind": error_kind}, n)
        out.append(errors)
        for key, (name, help, labels) in GAUGES.items():
            fam = Family(name, "gauge", help)
            for p in parts:
                value: Any = p.ctx.gauges.get(key)
                if isinstance(value, dict):
                    for values, v in sorted(value.items()):
                        fam.add({**p.labels, **dict(zip(labels, values))}, v)
                elif value is not None:
                    fam.add(p.labels, value)
            out.append(fam)
        for key, name, help, kinds in TIMINGS:
            fam = Family(name, "histogram", help)
            for p in parts:
                if p.roles.intersection(kinds):
                    fam.add_histogram(p.labels, p.ctx.timings.get(key) or Histogram())
            out.append(fam)
        out += self._buffers(parts)
        healthy = Family("pipeline_component_healthy", "gauge", "1 when /healthz finds nothing wrong with it")
        failing = {f["component"] for f in self.failing(parts)}
        for p in parts:
            healthy.add(p.labels, 0 if p.comp.id in failing else 1)
        out.append(healthy)
        out += process_families()
        return [f for f in out if f.samples]

    def _buffers(self, parts: list[Part]) -> list[Family]:
        fams = {key: Family(name, "gauge", help) for key, name, help in (
            ("events", "pipeline_buffer_events", "events in the sink's buffer"),
            ("bytes", "pipeline_buffer_bytes", "bytes the buffer holds against its max_bytes"),
            ("max_bytes", "pipeline_buffer_max_bytes", "the buffer's max_bytes"),
            ("chunks", "pipeline_buffer_chunks", "chunks in the buffer (the open one included)"),
            ("oldest_chunk_age_seconds", "pipeline_buffer_oldest_chunk_age_seconds",
             "age of the oldest chunk not yet written (0: empty)"),
        )}
        for p in parts:
            if p.runner is not None:
                for key, value in buffer_state(p.runner).items():
                    if key in fams:
                        fams[key].add(p.labels, value)
        return list(fams.values())

    def failing(self, parts: list[Part] | None = None) -> list[dict[str, Any]]:
        """The components /healthz reports, each with why."""
        out = []
        for p in self.parts() if parts is None else parts:
            for reason in problems(p, self.unhealthy_after):
                out.append({"component": p.comp.id, "kind": p.comp.kind, "type": p.comp.conf.type,
                            "reason": reason})
        return out

    @property
    def unhealthy_after(self) -> float:
        api = self.runtime.graph.settings.api
        return api.unhealthy_after if api is not None else 60.0

    def records(self) -> list[dict[str, Any]]:
        """The figures as records: one per component with its labels as fields, and one of
        the process; a histogram gives its _sum and _count, an extra label (error_kind)
        goes into the field's name (`component_errors_total.bad_input`)."""
        by_component: dict[str, dict[str, Any]] = {p.comp.id: dict(p.labels) for p in self.parts()}  # graph order
        process: dict[str, Any] = {}
        for fam in self.families():
            for suffix, labels, value in fam.samples:
                if suffix == "_bucket":
                    continue
                cid = labels.get("component_id")
                extra = [v for k, v in labels.items() if k not in LABELS]
                key = ".".join([fam.name.removeprefix("pipeline_") + suffix, *extra])
                if cid is None:
                    process[key] = value
                    continue
                by_component[cid][key] = value
        return [*by_component.values(), process]


def problems(part: Part, unhealthy_after: float) -> list[str]:
    """Why a component is unhealthy: the health its context tracks (a source's polls), a
    sink retrying longer than `unhealthy_after`, a full buffer."""
    out = []
    runner = part.runner
    if runner is None:
        if part.ctx.failing:
            out.append(part.ctx.last_failure or "failing")
        return out
    since = runner.failing_since
    if since is not None and time.monotonic() - since >= unhealthy_after:
        out.append(f"retrying for {time.monotonic() - since:.0f}s: {runner.failed_reason}")
    if runner.closed:
        out.append("its output is closed")
    buf = buffer_state(runner)
    if buf["full"]:
        out.append(f"buffer full ({buf['bytes']} of {buf['max_bytes']} bytes, overflow {buf['overflow']})")
    return out


def buffer_state(runner: SinkRunner) -> dict[str, Any]:
    buf = runner.buffer
    chunks = list(buf.sealed)
    if buf.open_chunk is not None and buf.open_chunk.count:
        chunks.append(buf.open_chunk)
    oldest = min((c.created for c in chunks), default=None)
    return {
        "events": sum(c.count for c in chunks),
        "bytes": buf.nbytes,
        "max_bytes": buf.max_bytes,
        "chunks": len(chunks),
        "oldest_chunk_age_seconds": 0.0 if oldest is None else round(time.monotonic() - oldest, 3),
        "full": buf.full and bool(chunks),
        "overflow": buf.overflow,
    }


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _start_time() -> float:
    """When this process started, in Unix seconds, from /proc as Prometheus' process collector
    reads it (boot time + start ticks): not the api's own start."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / _TICKS
    except (OSError, StopIteration, IndexError, ValueError):
        return time.time()  # near enough: the api starts with the process


START_TIME = _start_time()


def process_families() -> list[Family]:
    """The process collector's figures, under the names every Prometheus client gives them."""
    times = os.times()
    out = [Family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds."),
           Family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.")]
    out[0].add({}, round(times.user + times.system, 3))
    out[1].add({}, round(START_TIME, 2))
    try:
        with open("/proc/self/statm") as f:
            vsize, rss = (int(x) for x in f.read().split()[:2])
        mem = [Family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes."),
               Family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.")]
        mem[0].add({}, rss * _PAGE)
        mem[1].add({}, vsize * _PAGE)
        out += mem
        fds = [Family("process_open_fds", "gauge", "Number of open file descriptors."),
               Family("process_max_fds", "gauge", "Maximum number of open file descriptors.")]
        fds[0].add({}, len(os.listdir("/proc/self/fd")))
        fds[1].add({}, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        out += fds
    except OSError:  # no /proc (not Linux): the rest still holds
        pass
    return out


def _number(value: float) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    return str(value)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def exposition(families: list[Family]) -> str:
    """The Prometheus text format, 0.0.4."""
    lines = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {_escape(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for suffix, labels, value in fam.samples:
            text = ",".join(f'{k}="{_escape(str(v)).replace(chr(34), chr(92) + chr(34))}"'
                            for k, v in labels.items())
            lines.append(f"{fam.name}{suffix}{{{text}}} {_number(value)}" if text
                         else f"{fam.name}{suffix} {_number(value)}")
    return "\n".join(lines) + "\n"
