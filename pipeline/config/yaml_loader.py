"""The config file's YAML: every key and list item with its line, `${VAR}` expanded from the
environment, and bounds on what a small file may expand to (aliases, nesting).

Kept apart from config.py, which turns the document into a checked graph.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from .options import Errors, Reported, with_text


class LocDict(dict):
    line: int = 0
    lines: dict[Any, int]


class LocList(list):
    line: int = 0
    lines: dict[int, int]


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: placeholders filled per event by plugins (file paths, the record filter, the kafka source's tag), not from the
#: environment; `${tag_parts[N]}` and `${record.x}` are never names, so pass as they are
EVENT_PLACEHOLDERS = {"tag", "hostname", "topic"}


def expand(value: str, env: dict[str, str], missing: list[str]) -> str:
    """`${NAME}`, `${NAME:-default}` (the default may hold placeholders itself, as in
    `${A:-${B:-x}/y}`) and `$${...}` for a literal `${...}`; the names of unset variables
    without a default go to `missing`."""
    return _expand(value, 0, env, missing, nested=False)[0]


def _expand(value: str, i: int, env: dict[str, str], missing: list[str], nested: bool) -> tuple[str, int]:
    """Expand from `i` to the end, or (nested) to the `}` closing a default; returns the
    text and the index after it, or index -1 when a nested default is not closed."""
    out: list[str] = []
    while i < len(value):
        if nested and value[i] == "}":
            return "".join(out), i + 1
        close = value.find("}", i) if value.startswith("$${", i) else -1
        if close >= 0:
            out.append(value[i + 1:close + 1])
            i = close + 1
            continue
        name = _NAME.match(value, i + 2) if value.startswith("${", i) else None
        if name is None:
            out.append(value[i])
            i += 1
            continue
        end = name.end()
        if value.startswith("}", end):
            if name[0] in EVENT_PLACEHOLDERS:
                out.append(value[i:end + 1])
            elif name[0] in env:
                out.append(env[name[0]])
            else:
                missing.append(name[0])
            i = end + 1
        elif value.startswith(":-", end):
            # the default's own unset variables count only when the default is used
            inner: list[str] = []
            default, after = _expand(value, end + 2, env, inner, nested=True)
            if after < 0:
                out.append(value[i:])
                break
            if env.get(name[0]):
                out.append(env[name[0]])
            else:
                out.append(default)
                missing += inner
            i = after
        else:
            out.append(value[i])
            i += 1
    return "".join(out), (-1 if nested else i)


#: nodes that aliases may add to a config in all, and how deep it may nest: a config is
#: far below both, while 617 bytes of nested aliases (a "billion laughs") expand to 10^9
#: nodes and hold `pipeline check` for minutes, and deep nesting exhausts the stack
MAX_ALIAS_NODES = 10_000
MAX_DEPTH = 100


class _TooLarge(Exception):
    """A config past MAX_ALIAS_NODES or MAX_DEPTH, refused before it is built."""

    def __init__(self, event: yaml.Event, message: str) -> None:
        super().__init__(message)
        self.line = event.start_mark.line + 1 if event.start_mark else 0


class _Loader(yaml.SafeLoader):
    problems: list[tuple[int, str]]
    env: dict[str, str]
    aliased: int = 0  # nodes added by aliases so far
    depth: int = 0
    sizes: dict[int, int]  # of anchored nodes, by id

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) and event.anchor in self.anchors:
            self.aliased += _size(self.anchors[event.anchor], self.sizes)
            if self.aliased > MAX_ALIAS_NODES:
                raise _TooLarge(event, f"aliases expand to more than {MAX_ALIAS_NODES} values: not a config")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _TooLarge(event, f"nested more than {MAX_DEPTH} deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many nodes `node` stands for, its aliases expanded (each size once: linear)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    if isinstance(node, yaml.SequenceNode):
        n = 1 + sum(_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        n = 1 + sum(_size(k, sizes) + _size(v, sizes) for k, v in node.value)
    else:
        n = 1
    sizes[id(node)] = n
    return n


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> LocDict:
    loader.flatten_mapping(node)
    out = LocDict()
    out.line = node.start_mark.line + 1
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            loader.problems.append((key_node.start_mark.line + 1, "a key must be a plain value"))
            continue
        if key in out:
            loader.problems.append((key_node.start_mark.line + 1, f"duplicate key {key!r}"))
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> LocList:
    out = LocList(loader.construct_object(n, deep=True) for n in node.value)
    out.line = node.start_mark.line + 1
    out.lines = {i: n.start_mark.line + 1 for i, n in enumerate(node.value)}
    return out


def _construct_str(loader: _Loader, node: yaml.ScalarNode) -> Any:
    value = loader.construct_scalar(node)
    if "${" not in value:
        return value

    missing: list[str] = []
    expanded = expand(value, loader.env, missing)
    if missing:
        return _Unset(expanded, missing, node.start_mark.line + 1)
    if node.style is None:
        # an unquoted `${PORT:-24224}` is a number once expanded, as if written so
        resolved = loader.resolve(yaml.ScalarNode, expanded, (True, False))
        if resolved != "tag:yaml.org,2002:str":
            typed = loader.construct_object(yaml.ScalarNode(resolved, expanded))
            if isinstance(typed, (int, float)) and not isinstance(typed, bool):
                return with_text(typed, expanded)  # `password: ${PW}` keeps PW=0123 as written
            return typed
    return expanded


class _Unset(Reported):
    """A value naming an unset environment variable, reported later with its key path."""

    names: list[str]
    line: int

    def __new__(cls, text: str, names: list[str], line: int) -> _Unset:
        self = super().__new__(cls, text)
        self.names, self.line = names, line
        return self


def _report_unset(doc: Any, path: str, errors: Errors) -> Any:
    if isinstance(doc, _Unset):
        for name in doc.names:
            errors.add(doc.line, path, f"environment variable {name} is not set"
                       " (use ${" + name + ":-default} for a default)")
        return doc
    if isinstance(doc, dict):
        for k in doc:
            doc[k] = _report_unset(doc[k], f"{path}.{k}" if path else str(k), errors)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            doc[i] = _report_unset(v, f"{path}[{i}]", errors)
    return doc


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)
_Loader.add_constructor("tag:yaml.org,2002:str", _construct_str)


def parse_yaml(text: str, errors: Errors, env: dict[str, str] | None = None) -> Any:
    try:
        loader = _Loader(text)  # refuses a control character at once, before any parsing
    except yaml.reader.ReaderError as e:
        errors.add(text.count("\n", 0, e.position) + 1, "", f"YAML error: character #x{e.character:04x}: {e.reason}")
        return None
    loader.problems = []
    loader.sizes = {}
    loader.env = dict(os.environ) if env is None else env
    try:
        doc = loader.get_single_data()
    except _TooLarge as e:
        errors.add(e.line, "", str(e))
        return None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        errors.add(mark.line + 1 if mark else 0, "", f"YAML syntax error: {e.problem or e}")
        return None
    except yaml.YAMLError as e:
        errors.add(0, "", f"YAML error: {e}")
        return None
    finally:
        loader.dispose()
    for line, message in loader.problems:
        errors.add(line, "", message)
    return _report_unset(doc, "", errors)
