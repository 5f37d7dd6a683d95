"""Sink `stdout`: records on standard output, for td-agent's in_exec or mackerel-agent."""

from __future__ import annotations

import os
import sys

from ..event import Batch
from ..formats import ENCODE_FORMATS, TIME_FORMATS, Encoder, mackerel_meta, mackerel_names
from ..options import Enum, Option, Str
from ..plugin import OutputClosed, Sink

FORMAT_OPTIONS = (
    Option("format", Enum(*ENCODE_FORMATS), "json",
           "json (one object per line), msgpack (a stream of maps), ltsv, or mackerel "
           "(name<TAB>value<TAB>epoch per numeric field)"),
    Option("tag_key", Str(), None, "add the event's tag to each record under this key"),
    Option("time_key", Str(), None, "add the event's time to each record under this key"),
    Option("time_format", Enum(*TIME_FORMATS), "unix", "time_key's format: unix, float or iso8601"),
    Option("prefix", Str(), "", "mackerel format: prefix of every metric name"),
)


def make_encoder(conf) -> Encoder:
    return Encoder(conf.format, tag_key=conf.tag_key, time_key=conf.time_key,
                   time_format=conf.time_format, prefix=conf.prefix)


class StdoutSink(Sink):
    """Write records to standard output: whole lines only, flushed after each batch.

    With `format: mackerel`, `pipeline run --once` is a mackerel-agent plugin command: when
    the agent sets MACKEREL_AGENT_PLUGIN_META=1, the sink prints the graph definitions of the
    metrics it saw (`# mackerel-agent-plugin` and their JSON) instead of values.
    """

    options = FORMAT_OPTIONS

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.encoder = make_encoder(conf)
        self.meta: list[str] | None = None
        if conf.format == "mackerel" and os.environ.get("MACKEREL_AGENT_PLUGIN_META") == "1":
            self.meta = []

    async def write(self, batch: Batch) -> None:
        if self.meta is not None:
            self.meta += mackerel_names(batch, self.conf.prefix)
            return
        out = sys.stdout.buffer
        try:
            out.write(self.encoder.encode(batch))
            out.flush()
        except BrokenPipeError:
            raise OutputClosed("stdout: the reader closed the pipe") from None

    async def stop(self) -> None:
        if self.meta is not None:
            sys.stdout.buffer.write(mackerel_meta(self.meta))
            sys.stdout.buffer.flush()


PLUGIN = StdoutSink
