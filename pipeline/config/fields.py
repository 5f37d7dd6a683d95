"""What fields each component's records carry, told from the config alone, walked through
the graph: what mackerel-agent's graph definitions are built from (no poll), and how
`check` finds options that can never match what reaches them.

Each plugin class answers `fields(conf, upstream, check)`: given the fields of its inputs'
records (None: the config cannot tell, e.g. stdin), the fields of its own records. A
source's upstream is None. Problems that only the graph shows go to `check`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from .options import Errors, _line

#: a path part that stands for every position of a list
LIST = "[*]"

Path = tuple[str, ...]


@dataclass(frozen=True)
class Fields:
    """The numeric fields of records, each a path of keys from the record's top: `*` in a key
    stands for any text (a worker, a listener), `[*]` for any position in a list. A flattened
    key is one key: `("workers.*.requests",)`, where the uwsgi source has
    `("workers", "[*]", "requests")`. `many`: one run gives several records carrying these
    same fields (one per worker), which only a field in the record tells apart."""

    paths: tuple[Path, ...]
    many: bool = False

    def top(self, pattern: str) -> list[str]:
        """The top-level keys that a glob `pattern` matches (as the rate filter matches)."""
        return [p[0] for p in self.paths if len(p) == 1 and fnmatchcase(p[0], pattern)]

    def nested(self, pattern: str) -> list[Path]:
        """The paths inside nested maps and lists that a dotted glob `pattern` matches."""
        return [p for p in self.paths if len(p) > 1 and fnmatchcase(".".join(p), pattern)]


def fields_of(paths: Iterable[Path], many: bool = False) -> Fields:
    return Fields(tuple(dict.fromkeys(paths)), many)


def merge(inputs: list[Fields | None]) -> Fields | None:
    """What a component with these inputs receives: unknown if any input is."""
    if not inputs or any(f is None for f in inputs):
        return None
    known = [f for f in inputs if f is not None]
    return fields_of((p for f in known for p in f.paths), any(f.many for f in known))


class Check:
    """Where a component reports what the graph shows wrong: an error stops `check` and
    `run` (exit 2), a warning is printed by `check` and logged by `run`."""

    def __init__(self, comp: Any, errors: Errors, warnings: Errors):
        self.comp = comp
        self.errors, self.warnings = errors, warnings

    def _where(self, option: str, index: int | None) -> tuple[int, str]:
        raw = self.comp.raw
        path = f"{self.comp.kind}s.{self.comp.id}.{option}"
        if index is None:
            return _line(raw, option) or self.comp.line, path
        return _line(raw.get(option), index) or self.comp.line, f"{path}[{index}]"

    def error(self, option: str, message: str, index: int | None = None) -> None:
        self.errors.add(*self._where(option, index), message)

    def warn(self, option: str, message: str, index: int | None = None) -> None:
        self.warnings.warn(*self._where(option, index), message)


def walk(components: list[Any], errors: Errors, warnings: Errors) -> dict[str, Fields | None]:
    """Every component's fields, components given sources first and each after its inputs."""
    out: dict[str, Fields | None] = {}
    for comp in components:
        upstream = None if comp.kind == "source" else merge([out.get(i) for i in comp.inputs])
        out[comp.id] = comp.cls.fields(comp.conf, upstream, Check(comp, errors, warnings))
    return out
