"""Reading a config file into a checked graph, or a list of every problem in it.

Each problem is reported as `FILE:LINE: dotted.key.path: what is wrong`, so the
YAML loader keeps the line of every key and list item.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..plugin import KINDS, Filter, Plugin, Sink, Source, UnknownPlugin, load, names
from .addresses import API_ADDRESS, Listen
from .dashboard import DASHBOARD_OPTIONS, check_panels, warn_unknown_fields
from .fields import Fields, walk
from .options import (
    Duration,
    Enum,
    Errors,
    Option,
    Str,
    Struct,
    _did_you_mean,
    _line,
    resolve,
)
from .yaml_loader import LocDict, parse_yaml

#: the pseudo input that carries error events (bad input, given-up chunks)
ERRORS_INPUT = "_errors"
#: a stateful filter under `run --once` gives nothing without state, so there always is a place
#: for it: the XDG base directory spec's, read from the environment when the graph runs
DEFAULT_STATE_DIR = "${XDG_STATE_HOME:-~/.local/state}/pipeline"

TOP_OPTIONS = (
    Option("state_dir", Str(), DEFAULT_STATE_DIR,
           "directory for state kept between runs (rate counters); $XDG_STATE_HOME/pipeline, "
           "else ~/.local/state/pipeline"),
    Option("shutdown_timeout", Duration(), 10.0, "how long sinks may take to flush on stop"),
    Option("log_level", Enum("debug", "info", "warning", "error"), "info", "log level (logs go to stderr)"),
    Option("log_format", Enum("text", "json"), "text", "the pipeline's own log lines: text, or one JSON object a line"),
    Option("api", Struct(
        Option("address", Listen(), API_ADDRESS,
               "host:port to serve /healthz, /metrics, /api/components and taps on; a bare :port is loopback"),
        Option("unhealthy_after", Duration(min=0), 60.0,
               "a sink retrying this long makes /healthz answer 503"),
        Option("dashboard", Struct(*DASHBOARD_OPTIONS, name="dashboard"), None,
               "live charts on the api address (docs/dashboard.md); off unless set"),
        name="api"), None, "the api server (docs/api.md); off unless set"),
)
SECTIONS = {"sources": "source", "filters": "filter", "sinks": "sink"}
_BASES: dict[str, type[Plugin]] = {"source": Source, "filter": Filter, "sink": Sink}


@dataclass
class Component:
    id: str
    kind: str
    cls: type[Plugin]
    conf: SimpleNamespace
    line: int
    raw: Any = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


@dataclass
class Graph:
    file: str
    settings: SimpleNamespace
    components: dict[str, Component]
    #: `FILE:LINE: key: warning: ...` lines for what runs but looks like a mistake
    warnings: list[str] = field(default_factory=list)
    #: each component's fields, as far as the config tells (pipeline/config/fields.py)
    fields: dict[str, Fields | None] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Component]:
        return [c for c in self.components.values() if c.kind == kind]

    @property
    def state_dir(self) -> Path:
        return expand_state_dir(self.settings.state_dir)


def expand_state_dir(text: str) -> Path:
    if text == DEFAULT_STATE_DIR:
        # the spec: an unset or empty XDG_STATE_HOME means the default
        text = f"{os.environ.get('XDG_STATE_HOME') or '~/.local/state'}/pipeline"
    return Path(text).expanduser()


class ConfigError(Exception):
    def __init__(self, errors: Errors):
        super().__init__("\n".join(errors.lines()))
        self.errors = errors


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Graph:
    """Read and check a config file; raise ConfigError listing every problem."""
    errors = Errors(file=str(path))
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        errors.add(0, "", f"cannot read the config: {e}")
        raise ConfigError(errors) from None
    return build_graph(parse_yaml(text, errors, env), errors)


def build_graph(doc: Any, errors: Errors) -> Graph:
    if doc is None:
        if not errors:
            errors.add(0, "", "the config is empty: it needs sources: and sinks:")
        raise ConfigError(errors)
    if not isinstance(doc, dict):
        errors.add(_line(doc), "", "the config must be a map with sources:, filters: and sinks:")
        raise ConfigError(errors)
    settings = resolve(TOP_OPTIONS, doc, "", errors, ignore=SECTIONS)
    doc = _misspelled_sections(doc)
    components: dict[str, Component] = {}
    broken: set[str] = set()  # ids with no component at all: inputs naming them are not reported
    for section, kind in SECTIONS.items():
        body = doc.get(section)
        if body is None:
            if kind != "filter":
                errors.add(_line(doc), section, f"missing: a pipeline needs at least one {kind}")
            continue
        if not isinstance(body, dict):
            errors.add(_line(doc, section), section, "expected a map of id -> component")
            continue
        for cid, raw in body.items():
            comp = _component(section, kind, str(cid), raw, body, components, errors)
            if comp is not None:
                components[comp.id] = comp
            else:
                broken.add(str(cid))
    _check_edges(components, broken, errors)
    check_panels(settings, doc, components, broken, errors)
    _warn_unread(components, errors)
    if errors:
        raise ConfigError(errors)
    graph = Graph(file=errors.file, settings=settings, components=components)
    ordered = graph.of_kind("source") + topological(graph) + graph.of_kind("sink")
    graph.fields = walk(ordered, errors, errors)
    if errors:
        raise ConfigError(errors)
    warn_unknown_fields(settings, doc, graph.fields, errors)
    graph.warnings = errors.warning_lines()
    return graph


def _misspelled_sections(doc: dict) -> dict:
    """A section spelled wrong (`sorces:`) is read as the one it was meant to be: its unknown
    key is already reported with a did-you-mean, and one typo must not also give a missing
    section and every input naming its components as unknown."""
    known = {o.name for o in TOP_OPTIONS} | set(SECTIONS)
    typos: dict[str, str] = {}
    for key in doc:
        if isinstance(key, str) and key not in known:
            close = difflib.get_close_matches(key, list(SECTIONS), n=1, cutoff=0.6)
            if close and close[0] not in doc and close[0] not in typos.values():
                typos[key] = close[0]
    if not typos:
        return doc
    read = LocDict(doc)
    # the YAML lines, kept for every message
    read.line, read.lines = getattr(doc, "line", 0), dict(getattr(doc, "lines", {}))
    for typo, section in typos.items():
        read[section] = doc[typo]
        if typo in read.lines:
            read.lines[section] = read.lines[typo]
    return read


def _component(section: str, kind: str, cid: str, raw: Any, body: Any,
               seen: dict[str, Component], errors: Errors) -> Component | None:
    path = f"{section}.{cid}"
    line = _line(body, cid) or 0
    if cid.startswith("_") or not re.fullmatch(r"[A-Za-z0-9_.\-]+", cid):
        errors.add(line, path, "an id is letters, digits, '_', '-' and '.', not starting with '_'")
    if cid in seen:
        errors.add(line, path, f"id {cid!r} is already used by {seen[cid].kind} {cid!r}")
    if not isinstance(raw, dict):
        errors.add(line, path, "expected a map with a type:")
        return None
    type_name = raw.get("type")
    cls: type[Plugin] | None = None
    if not isinstance(type_name, str):
        errors.add(_line(raw, "type") or line, f"{path}.type",
                   "missing required option" if type_name is None else "expected a plugin name")
    else:
        try:
            cls = load(kind, type_name)
        except UnknownPlugin:
            hint = _did_you_mean(type_name, names(kind))
            errors.add(_line(raw, "type"), f"{path}.type",
                       f"unknown {kind} type {type_name!r}{hint}; `pipeline plugins` lists them")
    if cls is None:
        # the plugin's own options cannot be checked, but its inputs can, in this same pass
        cls = _BASES[kind]
        conf = resolve([o for o in cls.common_options if o.name != "type"], raw, path, errors, ignore=raw)
    else:
        conf = resolve(cls.all_options(), raw, path, errors)
    inputs = list(getattr(conf, "inputs", None) or [])
    return Component(cid, kind, cls, conf, line, raw, inputs=inputs)


def _check_edges(components: dict[str, Component], broken: set[str], errors: Errors) -> None:
    for comp in components.values():
        if comp.kind == "source":
            continue
        if not comp.inputs and getattr(comp.conf, "inputs", None) is not None:
            errors.add(_line(comp.raw, "inputs"), f"{comp.kind}s.{comp.id}.inputs",
                       f"a {comp.kind} needs at least one input")
        listed: set[str] = set()
        for i, name in enumerate(comp.inputs):
            where = _line(comp.raw.get("inputs"), i) or comp.line
            path = f"{comp.kind}s.{comp.id}.inputs[{i}]"
            if name in listed:
                errors.add(where, path, f"{name!r} is listed twice: each of its events would be taken twice")
                continue
            listed.add(name)
            if name == ERRORS_INPUT or name in broken:
                continue
            target = components.get(name)
            if target is None or target.kind == "sink":
                candidates = [c.id for c in components.values() if c.kind != "sink"] + [ERRORS_INPUT]
                what = "is a sink, which has no output" if target else "is not a source or filter id"
                errors.add(where, path, f"{name!r} {what}{_did_you_mean(name, candidates)}")
            else:
                target.outputs.append(comp.id)
    _check_cycles(components, errors)


def _warn_unread(components: dict[str, Component], errors: Errors) -> None:
    for comp in components.values():
        if comp.kind != "sink" and not comp.outputs:
            errors.warn(comp.line, f"{comp.kind}s.{comp.id}",
                        f"nothing reads this {comp.kind}: no filter or sink lists {comp.id!r} in its inputs")


def _check_cycles(components: dict[str, Component], errors: Errors) -> None:
    done: set[str] = set()
    reported: set[frozenset[str]] = set()

    def visit(cid: str, trail: list[str]) -> None:
        if cid in trail:
            chain = trail[trail.index(cid):] + [cid]
            key = frozenset(chain)
            if key not in reported:
                reported.add(key)
                first = components[chain[0]]
                errors.add(_line(first.raw, "inputs"), f"filters.{chain[0]}.inputs",
                           "cycle: " + " -> ".join(chain))
            return
        if cid in done:
            return
        for out in components[cid].outputs:
            visit(out, trail + [cid])
        done.add(cid)

    for cid in components:
        visit(cid, [])


def topological(graph: Graph) -> list[Component]:
    """Filters in an order where every filter comes after all of its inputs."""
    order: list[Component] = []
    seen: set[str] = set()

    def visit(c: Component) -> None:
        if c.id in seen:
            return
        seen.add(c.id)
        for i in c.inputs:
            if i in graph.components:
                visit(graph.components[i])
        order.append(c)

    for c in graph.of_kind("filter"):
        visit(c)
    return [c for c in order if c.kind == "filter"]


def describe(graph: Graph) -> str:
    lines = []
    for kind in KINDS:
        comps = graph.of_kind(kind)
        if not comps:
            continue
        lines.append(f"{kind}s:")
        for c in comps:
            parts = [f"  {c.id} ({c.conf.type})"]
            if c.inputs:
                parts.append("<- " + ", ".join(c.inputs))
            if c.outputs:
                parts.append("-> " + ", ".join(c.outputs))
            if getattr(c.conf, "match", None):
                m = c.conf.match
                parts.append("match " + (" ".join(m) if isinstance(m, list) else m))
            lines.append(" ".join(parts))
    return "\n".join(lines)
