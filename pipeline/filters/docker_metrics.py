"""Filter `docker_metrics`: what `docker stats` shows, added to each container's stats."""

from __future__ import annotations

from typing import Any

from ..config.options import Duration, Int, Option, Str
from ..event import Batch
from ..metrics import docker_stats as ds
from ..metrics.rates import RateTracker, parse_rfc3339_ns
from ..plugin import Filter

RATED = ("net_rx_bytes", "net_tx_bytes", "blkio_read_bytes", "blkio_write_bytes")


class DockerMetricsFilter(Filter):
    """Add `cpu_percent`, `memory_usage`/`memory_limit`/`memory_percent`,
    `net_rx_bytes`/`net_tx_bytes` and `blkio_read_bytes`/`blkio_write_bytes` (with `_rate` per
    second), and `pids`, computed as the Docker CLI computes what `docker stats` prints (cgroup v1 and v2).

    CPU% compares with `precpu_stats` when the engine filled it, else with this container's
    previous sample (one-shot stats and podman leave it empty), so the first one-shot
    sample of a container has no cpu_percent. Rates use the rate filter's machinery, timed
    by the sample's own `read`; a restarted container's counters start a new series instead
    of a negative rate. A stopped container's sample (`read` 0001-01-01T00:00:00Z) gets no
    metrics and leaves its series alone. State is kept between `--once` runs (state_dir).
    """

    stateful = True
    options = (
        Option("id_field", Str(), "container_id", "field that tells containers apart (`id` in raw stats)"),
        Option("max_gap", Duration(min=0.001), None, "a longer gap between samples gives no rate"),
        Option("max_series", Int(min=1), 10000, "most containers remembered"),
        Option("state_ttl", Duration(min=1), 86400.0, "forget a container unseen this long"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.rates = RateTracker(ctx.counters, max_gap=conf.max_gap, max_series=conf.max_series * len(RATED),
                                 state_ttl=conf.state_ttl)
        # container -> (cpu ns, system ns, online cpus, read ns) of its last sample
        self.cpu: dict[Any, tuple[int | float, int | float, int, int]] = {}

    def process(self, batch: Batch) -> Batch:
        out: Batch = []
        for tag, t, record in batch:
            when = parse_rfc3339_ns(record.get("read") or "") if isinstance(record.get("read"), str) else None
            if when is None:
                self.ctx.counters["not_running"] += 1
                out.append((tag, t, record))
                continue
            cid = record.get(self.conf.id_field) or record.get("id") or record.get("Id") or record.get("name")
            new = dict(record)
            now = ds.cpu_times(record.get("cpu_stats") or {})
            pre = ds.cpu_times(record.get("precpu_stats") or {})
            last = self.cpu.get(cid)
            if pre[1]:
                new["cpu_percent"] = ds.cpu_percent(now, pre)
            elif last is not None and last[3] < when and now[0] >= last[0]:
                new["cpu_percent"] = ds.cpu_percent(now, last[:3])  # type: ignore[arg-type]
            self.cpu.pop(cid, None)
            self.cpu[cid] = (*now, when)
            if len(self.cpu) > self.conf.max_series:
                del self.cpu[next(iter(self.cpu))]
            new.update(ds.memory(record))
            counters = {**ds.network(record), **ds.block_io(record)}
            new.update(counters)
            for name, value in counters.items():
                rate = self.rates.update((tag, cid, name), value, when)
                if rate is not None:
                    new[name + "_rate"] = rate
            pids = (record.get("pids_stats") or {}).get("current")
            if pids is not None:
                new["pids"] = pids
            out.append((tag, t, new))
        return out

    def save_state(self) -> Any:
        return {"rates": self.rates.save_state(), "cpu": [[k, *v] for k, v in self.cpu.items()]}

    def load_state(self, state: Any) -> None:
        if not isinstance(state, dict):
            return
        self.rates.load_state(state.get("rates"))
        for entry in state.get("cpu") or ():
            if isinstance(entry, list) and len(entry) == 5:
                self.cpu[entry[0]] = tuple(entry[1:])  # type: ignore[assignment]


PLUGIN = DockerMetricsFilter
