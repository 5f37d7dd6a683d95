"""What fields each component's records carry, told from the config alone, walked through
the graph: what mackerel-agent's graph definitions are built from (no poll), and how
`check` finds options that can never match what reaches them.

Each plugin class answers `fields(conf, upstream, check)`: given the fields of its inputs'
records (None: the config cannot tell, e.g. stdin), the fields of its own records. A
source's upstream is None. Problems that only the graph shows go to `check`.

Each field has a kind: what its number measures and how it moves. The plugin that makes a
field declares it (uwsgi knows `rss` is bytes and `requests` a counter; rate knows its output
is a rate of what it read); filters that move or rename fields carry the kind along. Names
alone could not tell it: `requests` is a counter in a worker and `in_request` a gauge in a
core, `tx` is bytes and `signals` a count, `last_spawn` an epoch time. A sink that graphs
(mackerel) groups fields by kind and turns counters into increases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from .options import Errors, _line

#: a path part that stands for every position of a list
LIST = "[*]"

Path = tuple[str, ...]

# the kinds of fields; an undeclared field's kind is None (a number the config knows nothing of)
GAUGE = "gauge"                  # a level that goes up and down (a load, an average)
INTEGER = "integer"              # a count that goes up and down (a queue's length, busy workers)
BYTES = "bytes"                  # a size in bytes (memory)
PERCENT = "percentage"           # 0-100
MICROSECONDS = "microseconds"    # a duration (an average response time)
COUNTER = "counter"              # a count that only grows (requests, errors) but at a restart
BYTES_COUNTER = "bytes_counter"  # bytes that only grow (sent, read)
TIME_COUNTER = "time_counter"    # microseconds that only grow (time spent in requests)
RATE = "rate"                    # a counter's increase per unit of time (the rate filter's `per`)
BYTES_RATE = "bytes_rate"        # bytes per second
LABEL = "label"                  # a number that measures nothing: an id, a pid, a port, an epoch time
KINDS = (GAUGE, INTEGER, BYTES, PERCENT, MICROSECONDS, COUNTER, BYTES_COUNTER, TIME_COUNTER, RATE,
         BYTES_RATE, LABEL)
#: the kind of a counter's rate per second (per another unit of time: RATE)
RATE_OF = {BYTES_COUNTER: BYTES_RATE}


@dataclass(frozen=True)
class Fields:
    """The numeric fields of records, each a path of keys from the record's top: `*` in a key
    stands for any text (a worker, a listener), `[*]` for any position in a list. A flattened
    key is one key: `("workers.*.requests",)`, where the uwsgi source has
    `("workers", "[*]", "requests")`. `many`: one run gives several records carrying these
    same fields (one per worker), which only a field in the record tells apart. `kinds`: the
    kind of each path that has one declared (the KINDS above). `open`: the records may carry
    other numeric fields too, which the config cannot tell (docker_metrics' fields added to a
    Docker stats document)."""

    paths: tuple[Path, ...]
    many: bool = False
    kinds: dict[Path, str] = field(default_factory=dict, compare=False)
    open: bool = False

    def kind(self, path: Path) -> str | None:
        return self.kinds.get(path)

    def mapped(self, change: Callable[[Path], Iterable[Path]]) -> Fields:
        """These fields, each path replaced by those `change` gives for it (none: dropped),
        each keeping its kind: what a filter that renames, selects or flattens gives."""
        return self.like((new, self.kinds.get(p)) for p in self.paths for new in change(p))

    def like(self, items: Iterable[Path | tuple[Path, str | None]], many: bool | None = None) -> Fields:
        """Fields of these paths (or (path, kind) pairs) on records like these (as many, as open)."""
        return fields_of(items, self.many if many is None else many, self.open)

    def top(self, pattern: str) -> list[str]:
        """The top-level keys that a glob `pattern` matches (as the rate filter matches)."""
        return [p[0] for p in self.paths if len(p) == 1 and fnmatchcase(p[0], pattern)]

    def nested(self, pattern: str) -> list[Path]:
        """The paths inside nested maps and lists that a dotted glob `pattern` matches."""
        return [p for p in self.paths if len(p) > 1 and fnmatchcase(".".join(p), pattern)]


def matches(name: str, key: str) -> bool:
    """Whether a record's key `name` is one that the declared `key` stands for (`*`: any text)."""
    return name == key or ("*" in key and fnmatchcase(name, key))


def fields_of(items: Iterable[Path | tuple[Path, str | None]], many: bool = False, open: bool = False) -> Fields:
    """Fields from paths, each alone or as (path, kind); a path given twice keeps its first kind."""
    kinds: dict[Path, str | None] = {}
    for item in items:
        path, kind = (item, None) if not item or isinstance(item[0], str) else item  # type: ignore[misc]
        if path not in kinds or kinds[path] is None:
            kinds[path] = kind
    return Fields(tuple(kinds), many, {p: k for p, k in kinds.items() if k is not None}, open)


def merge(inputs: list[Fields | None]) -> Fields | None:
    """What a component with these inputs receives: unknown if any input is."""
    if not inputs or any(f is None for f in inputs):
        return None
    known = [f for f in inputs if f is not None]
    return fields_of(((p, f.kind(p)) for f in known for p in f.paths), any(f.many for f in known),
                     any(f.open for f in known))


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
