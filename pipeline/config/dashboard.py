"""The `api.dashboard` section: its option declarations and what `check` finds wrong in it.

Kept apart from the store and the pages (dashboard.py) because config.py declares it for
every config, while the rest is imported only by a running api.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from .options import Duration, Enum, Errors, Int, ListOf, Option, Str, Struct, _did_you_mean, _line

UNITS = ("bytes", "bytes_per_second", "percent", "per_second", "seconds", "none")

PANEL_OPTIONS = (
    Option("title", Str(), help="the chart's title"),
    Option("input", Str(), help="the source or filter whose records are charted"),
    Option("field", Str(), help="the numeric field charted (a dotted path works: memory.rss)"),
    Option("series", Str(), None, "one line per value of this field (a dotted path works); unset: one line"),
    Option("unit", Enum(*UNITS), None,
           "the axis unit; unset: guessed from the field's name (_percent, _bytes_rate, _rate, _bytes)"),
)

DASHBOARD_OPTIONS = (
    Option("history", Duration(min=60), 3600.0, "how long each series is kept in memory"),
    Option("max_series", Int(min=1), 50, "most series per panel; points of more are dropped and counted"),
    Option("unseen_after", Duration(min=1), 60.0,
           "a panel whose field no record had by then is logged as a warning, once"),
    Option("panels", ListOf(Struct(*PANEL_OPTIONS, name="panel")), help="the charts, in page order"),
)


def guess_unit(field: str) -> str:
    """The unit a field's name tells (docker_metrics' and the rate filter's names)."""
    name = field.rsplit(".", 1)[-1]
    if name.endswith("_percent"):
        return "percent"
    if name.endswith("_bytes_rate"):
        return "bytes_per_second"
    if name.endswith("_rate"):
        return "per_second"
    if name.endswith(("_bytes", "memory_usage", "memory_limit", "rss", "vsz")):
        return "bytes"
    return "none"


def _panels(settings: Any, doc: Any) -> list[tuple[Any, Any]]:
    """(panel, its YAML map) of each panel."""
    dashboard = getattr(settings.api, "dashboard", None) if settings.api is not None else None
    if dashboard is None or not dashboard.panels:
        return []
    return list(zip(dashboard.panels, doc["api"]["dashboard"]["panels"]))


def warn_unknown_fields(settings: Any, doc: Any, fields: dict[str, Any], errors: Errors) -> None:
    """Where the config tells the input's numeric fields (pipeline/config/fields.py), a panel's
    field should be one: a typo otherwise shows only as an empty chart."""
    for i, (panel, raw) in enumerate(_panels(settings, doc)):
        known = fields.get(panel.input)
        if known is None or any(fnmatchcase(panel.field, ".".join(p)) for p in known.paths):
            continue
        names = sorted({".".join(p) for p in known.paths if "[*]" not in p})
        errors.warn(_line(raw, "field"), f"api.dashboard.panels[{i}].field",
                    f"{panel.input!r} gives no numeric field {panel.field!r}{_did_you_mean(panel.field, names)}"
                    f"; its records have {', '.join(names)}")


def check_panels(settings: Any, doc: Any, components: dict[str, Any], broken: set[str], errors: Errors) -> None:
    """A panel's input must be a source or filter of this config."""
    panels = _panels(settings, doc)
    raw = [r for _, r in panels]
    candidates = [c.id for c in components.values() if c.kind != "sink"]
    for i, (panel, _) in enumerate(panels):
        name = panel.input
        if name is None or name in broken:
            continue
        target = components.get(name)
        if target is not None and target.kind != "sink":
            continue
        what = "is a sink, which has no output" if target else "is not a source or filter id"
        errors.add(_line(raw[i], "input"), f"api.dashboard.panels[{i}].input",
                   f"{name!r} {what}{_did_you_mean(name, candidates)}")
