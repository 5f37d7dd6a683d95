"""Sink `stdout`: records on standard output, for td-agent's in_exec or mackerel-agent."""

from __future__ import annotations

import sys

from ..codecs.encode import ENCODE_FORMATS, TIME_FORMATS, Encoder, mackerel_graphs
from ..codecs.formats import json_dumps
from ..config.fields import merge
from ..config.options import Enum, ListOf, Option, Str
from ..event import Batch
from ..plugin import OutputClosed, Sink

FORMAT_OPTIONS = (
    Option("format", Enum(*ENCODE_FORMATS), "json",
           "json (one object per line), msgpack (a stream of maps), ltsv, or mackerel "
           "(name<TAB>value<TAB>epoch per numeric field)"),
    Option("tag_key", Str(), None, "add the event's tag to each record under this key"),
    Option("time_key", Str(), None, "add the event's time to each record under this key"),
    Option("time_format", Enum(*TIME_FORMATS), "unix", "time_key's format: unix, float or iso8601"),
    Option("prefix", Str(), "", "mackerel format: prefix of every metric name"),
    Option("name_by", ListOf(Str()), [],
           "mackerel format: fields whose values name each record's metrics (PREFIX.VALUE.FIELD), "
           "for several records a run, e.g. [id] for one per uWSGI worker"),
)


def make_encoder(conf, tag_key: str | None = None) -> Encoder:
    """The encoder the format options ask for; `tag_key` where the sink decides it."""
    return Encoder(conf.format, tag_key=tag_key or conf.tag_key or None, time_key=conf.time_key or None,
                   time_format=conf.time_format, prefix=conf.prefix, name_by=conf.name_by)


class StdoutSink(Sink):
    """Write records to standard output: whole lines only, flushed after each batch.

    With `format: mackerel`, `pipeline run --once` is a mackerel-agent plugin command. When
    the agent sets MACKEREL_AGENT_PLUGIN_META=1, it prints the graph definitions instead
    (`# mackerel-agent-plugin` and their JSON), built from the config: nothing is polled and
    no state is written. Every field the inputs can carry gets a graph (a per-worker or
    per-listener part as the `#`/`*` wildcard); where the config cannot tell the fields (stdin,
    exec, http_json), `metrics` lists them. A name without a dot is put under `pipeline.`.
    """

    options = FORMAT_OPTIONS + (
        Option("metrics", ListOf(Str()), [],
               "mackerel format: more fields to define graphs for, as records carry them "
               "(dotted, `*` for a part that varies), for inputs whose fields the config cannot tell"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.encoder = make_encoder(conf)

    @classmethod
    def fields(cls, conf, upstream, check):
        if conf.format != "mackerel":
            return None
        if upstream is None and not conf.metrics:
            check.warn("format", "the fields of its inputs cannot be told from the config, so "
                       "mackerel-agent's graph definitions lack them: list them in `metrics`")
        elif upstream is not None and upstream.many and not conf.name_by:
            check.warn("name_by", "several records a run carry the same fields, so they print the "
                       "same metric names and mackerel-agent keeps only the last: set name_by to "
                       "the field that tells them apart (e.g. [id])")
        return None

    async def write(self, batch: Batch) -> None:
        out = sys.stdout.buffer
        try:
            data = self.encoder.encode(batch)
            out.write(data)
            out.flush()
            self.ctx.counters["bytes_out"] += len(data)
        except BrokenPipeError:
            raise OutputClosed("stdout: the reader closed the pipe") from None


def plugin_meta(graph) -> bytes | None:
    """mackerel-agent's graph definitions for the graph's mackerel stdout sinks, or None if
    it has none."""
    sinks = [c for c in graph.of_kind("sink") if c.cls is StdoutSink and c.conf.format == "mackerel"]
    if not sinks:
        return None
    definitions: dict = {}
    for sink in sinks:
        upstream = merge([graph.fields.get(i) for i in sink.inputs])
        paths = list(upstream.paths if upstream else ()) + [(m,) for m in sink.conf.metrics]
        definitions.update(mackerel_graphs(paths, sink.conf.prefix, sink.conf.name_by))
    return b"# mackerel-agent-plugin\n" + json_dumps({"graphs": definitions}) + b"\n"


PLUGIN = StdoutSink
