"""What `docker stats` shows, from a stats document, computed as the Docker CLI does it
(cli/command/container/stats_helpers.go: calculateCPUPercentUnix,
calculateMemUsageUnixNoCache, calculateBlockIO, calculateNetwork)."""

from __future__ import annotations

from typing import Any


def _num(value: Any) -> int | float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def cpu_times(stats: dict) -> tuple[int | float, int | float, int]:
    """(container cpu ns, system cpu ns, online cpus) of a cpu_stats or precpu_stats map."""
    usage = stats.get("cpu_usage") or {}
    online = _num(stats.get("online_cpus")) or len(usage.get("percpu_usage") or ())
    return _num(usage.get("total_usage")), _num(stats.get("system_cpu_usage")), int(online)


def cpu_percent(now: tuple[int | float, int | float, int], before: tuple[int | float, int | float, int]) -> float:
    """The CLI's formula: container delta / system delta x online cpus x 100; 0 when either
    delta is not positive (the CLI prints 0.00%)."""
    cpu_delta = now[0] - before[0]
    system_delta = now[1] - before[1]
    if cpu_delta > 0 and system_delta > 0:
        return cpu_delta / system_delta * now[2] * 100.0
    return 0.0


def memory(stats: dict) -> dict[str, Any]:
    """Usage without the inactive page cache (v1 total_inactive_file, v2 inactive_file),
    the limit and the percentage; empty for a stopped container's empty memory stats."""
    mem = stats.get("memory_stats") or {}
    if "usage" not in mem:
        return {}
    usage = _num(mem.get("usage"))
    detail = mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        cache = detail.get(key)
        if isinstance(cache, int) and cache < usage:
            usage -= cache
            break
    limit = _num(mem.get("limit"))
    return {"memory_usage": usage, "memory_limit": limit,
            "memory_percent": usage / limit * 100.0 if limit else 0.0}


def network(stats: dict) -> dict[str, int | float]:
    nets = stats.get("networks")
    if not isinstance(nets, dict) or not nets:
        return {}
    return {"net_rx_bytes": sum(_num(n.get("rx_bytes")) for n in nets.values() if isinstance(n, dict)),
            "net_tx_bytes": sum(_num(n.get("tx_bytes")) for n in nets.values() if isinstance(n, dict))}


def block_io(stats: dict) -> dict[str, int | float]:
    blkio = stats.get("blkio_stats")
    if not isinstance(blkio, dict):
        return {}
    read: int | float = 0
    write: int | float = 0
    # `[]`, `null` and a missing list all occur: the CLI shows 0B for each
    for e in blkio.get("io_service_bytes_recursive") or ():
        if isinstance(e, dict):
            op = str(e.get("op", "")).lower()  # v1 "Read"/"Write", v2 "read"/"write"
            if op == "read":
                read += _num(e.get("value"))
            elif op == "write":
                write += _num(e.get("value"))
    return {"blkio_read_bytes": read, "blkio_write_bytes": write}
