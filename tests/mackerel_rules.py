"""How mackerel-agent and Mackerel pair a plugin's values with its graph definitions, as a
test oracle (mackerel-agent metrics/plugin.go, go-mackerel-plugin-helper's wildcards).

The agent posts a value line `NAME<TAB>VALUE<TAB>EPOCH` as the metric `custom.NAME`, and
defines each meta graph GRAPH's metric METRIC as `custom.GRAPH.METRIC`. A value has a graph
when its name matches one such definition, where `#` and `*` each stand for one name part
(`[-a-zA-Z0-9_]+`, the helper's regexp) and everything else is literal."""

from __future__ import annotations

import json
import re

PREFIX = "custom."


def parse_meta(stdout: bytes) -> dict:
    header, body = stdout.decode().split("\n", 1)
    assert re.match(r"^#\s*mackerel-agent-plugin\b", header), header
    return json.loads(body)["graphs"]


def definitions(graphs: dict) -> list[str]:
    return [PREFIX + key + "." + metric["name"] for key, graph in graphs.items() for metric in graph["metrics"]]


def _regexp(definition: str) -> re.Pattern[str]:
    part = "[-a-zA-Z0-9_]+"
    return re.compile(re.escape(definition).replace(r"\*", part).replace(r"\#", part) + r"\Z")


def value_names(stdout: bytes) -> list[str]:
    names = []
    for line in stdout.decode().splitlines():
        items = line.split()
        if len(items) >= 3:  # the agent skips shorter lines
            float(items[1])
            names.append(items[0])
    return names


def uncovered(names: list[str], graphs: dict) -> list[str]:
    """The value names that no graph metric of the meta matches."""
    patterns = [_regexp(d) for d in definitions(graphs)]
    return [n for n in names if not any(p.match(PREFIX + n) for p in patterns)]
