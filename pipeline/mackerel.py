"""mackerel-agent plugin meta: the graph definitions printed when the agent runs a plugin
command with MACKEREL_AGENT_PLUGIN_META=1, built from the metrics a `--once` run produced."""

from __future__ import annotations

from collections.abc import Iterable

from .event import Record
from .formats import _MACKEREL_BAD, _numeric_items, json_dumps

META_ENV = "MACKEREL_AGENT_PLUGIN_META"
HEADER = b"# mackerel-agent-plugin\n"


def metric_names(records: Iterable[Record], prefix: str = "") -> list[str]:
    """The names `format: mackerel` prints for these records, first seen first, once each."""
    names = (_MACKEREL_BAD.sub("_", n) for r in records for n, _ in _numeric_items(r, prefix))
    return list(dict.fromkeys(names))


def graph_definitions(names: Iterable[str]) -> dict:
    """One graph per name minus its last part, the last part being the metric. The graphs under
    one parent that holds no metrics itself and whose graphs all hold the same metrics (one per
    listener, worker, container) become one graph with mackerel's `#` wildcard, so a new
    listener needs no new meta."""
    graphs: dict[str, list[str]] = {}
    for name in names:
        graph, _, metric = name.rpartition(".")
        if graph:  # a metric needs a graph to live in: a name without a dot has none (set `prefix`)
            graphs.setdefault(graph, []).append(metric)
    children: dict[str, list[str]] = {}
    for graph in graphs:
        parent, dot, _ = graph.rpartition(".")
        if dot and parent not in graphs:
            children.setdefault(parent, []).append(graph)
    for parent, members in children.items():
        metrics = graphs[members[0]]
        if all(graphs[g] == metrics for g in members):
            for g in members:
                del graphs[g]
            graphs[f"{parent}.#"] = metrics
    return {"graphs": {
        graph: {"label": graph, "unit": "float",
                "metrics": [{"name": m, "label": m} for m in metrics]}
        for graph, metrics in graphs.items()}}


def plugin_meta(records: Iterable[Record], prefix: str = "") -> bytes:
    """What the plugin command prints instead of values when the agent asks for meta."""
    return HEADER + json_dumps(graph_definitions(metric_names(records, prefix))) + b"\n"
