"""Health and the components' JSON: what /healthz and /api/components answer."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from ..config.options import ListOf, Option, Struct
from ..engine.figures import Figures, Part, buffer_state, problems

MASK = "********"


def health(figures: Figures) -> tuple[int, dict[str, Any]]:
    failing = figures.failing()
    if failing:
        return 503, {"status": "failing", "failing": failing}
    return 200, {"status": "ok"}


def masked(options: tuple[Option, ...] | list[Option], conf: SimpleNamespace) -> dict[str, Any]:
    """A component's config as JSON, the values of options declared secret masked (a map's
    values: its keys, header names, stay readable)."""
    out: dict[str, Any] = {}
    for opt in options:
        value = getattr(conf, opt.name, None)
        if opt.secret and value:
            value = {k: MASK for k in value} if isinstance(value, dict) else MASK
        elif isinstance(opt.type, Struct) and isinstance(value, SimpleNamespace):
            value = masked(opt.type.options, value)
        elif isinstance(opt.type, ListOf) and isinstance(opt.type.item, Struct) and isinstance(value, list):
            value = [masked(opt.type.item.options, v) for v in value]
        else:
            value = opt.type.show(value)
        out[opt.name] = value
    return out


def component(part: Part, unhealthy_after: float) -> dict[str, Any]:
    comp, ctx = part.comp, part.ctx
    reasons = problems(part, unhealthy_after)
    out: dict[str, Any] = {
        "id": comp.id, "kind": comp.kind, "type": comp.conf.type,
        "inputs": comp.inputs, "outputs": comp.outputs,
        "healthy": not reasons, "problems": reasons,
        "counters": dict(ctx.counters),
        "errors": dict(ctx.error_kinds),
        "gauges": {k: {"/".join(labels): n for labels, n in v.items()} if isinstance(v, dict) else v
                   for k, v in ctx.gauges.items()},
        "timings": {k: {"count": h.count, "sum_seconds": round(h.sum, 6)} for k, h in ctx.timings.items()},
        "config": masked(comp.cls.all_options(), comp.conf),
    }
    runner = part.runner
    if runner is not None:
        since = runner.failing_since
        out["buffer"] = buffer_state(runner)
        out["sink"] = {
            "retrying_seconds": None if since is None else round(time.monotonic() - since, 3),
            "last_error": runner.failed_reason,
            "given_up": ctx.counters["given_up"],
        }
    return out


def components(figures: Figures) -> dict[str, Any]:
    after = figures.unhealthy_after
    return {"components": [component(p, after) for p in figures.parts()],
            "taps": sum(len(t) for t in figures.taps.values())}
