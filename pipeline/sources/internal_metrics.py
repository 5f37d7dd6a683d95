"""Source `internal_metrics`: the pipeline's own figures, as events."""

from __future__ import annotations

from ..event import Batch, now_ns
from ..plugin import PollSource


class InternalMetricsSource(PollSource):
    """Every `interval`, the figures the api serves on /metrics, as records to ship like any
    other (to fluentd, a file, a prometheus_exporter sink).

    One record per component, with its `component_id`, `component_type` and
    `component_kind`, and one field per figure, named as on /metrics without the
    `pipeline_` prefix (`component_sent_events_total`, `buffer_events`); a histogram gives
    its `_sum` and `_count`; errors by kind are `component_errors_total.KIND`. One more
    record carries the process' figures (`process_cpu_seconds_total`,
    `process_resident_memory_bytes`, ...). No api needs to be configured.
    """

    async def poll(self) -> Batch:
        t = now_ns()
        return [self.event(record, t) for record in self.ctx.figures().records()]


PLUGIN = InternalMetricsSource
