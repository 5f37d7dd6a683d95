"""Filter `flatten`: nested maps and lists to one level of keys."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..config.fields import LIST, fields_of
from ..config.options import Enum, Int, ListOf, Option, Str
from ..event import Batch, Record
from ..plugin import Filter

_NORIKRA_BAD = re.compile(r"[^A-Za-z0-9_$]")
_NORIKRA_BAD_IN_PATTERN = re.compile(r"[^A-Za-z0-9_$*]")


class FlattenFilter(Filter):
    """Flatten nested maps and lists into one level, in the key style a downstream tool needs.

    Styles (`separator` + `arrays`):
    - `arrays: index` (default): `workers.0.id`, as fluentd's flatten_hash and
      mackerel-plugin-json name keys; fits fluentd, Elasticsearch, InfluxDB field names.
    - `arrays: keep`: lists stay lists (`workers: [...]`), as Vector's flatten does.
    - `arrays: norikra`: `workers.$0.id`, the path form Norikra prints. Norikra reads a key
      with `.` as a nested path, so records for Norikra use `separator: "_"` and
      `sanitize: norikra` (characters outside [A-Za-z0-9_$] become `_`), e.g. `workers_$0_id`.

    Key collisions (`{"a.b": 1, "a": {"b": 2}}` both give `a.b`): the first key in document
    order keeps the name; each later one is kept as `a.b~2`, `a.b~3`, ... and counted as
    `key_collisions`, so no value is ever lost. Empty maps and lists are kept as values.
    """

    options = (
        Option("separator", Str(), ".", "joins the parts of a key"),
        Option("arrays", Enum("index", "keep", "norikra"), "index",
               "list elements as `key.0` (index), `key.$0` (norikra), or left as lists (keep)"),
        Option("sanitize", Enum("none", "norikra"), "none",
               "norikra: characters outside [A-Za-z0-9_$] in key parts become _"),
        Option("max_depth", Int(min=1), None, "levels to flatten; deeper values are kept as they are"),
        Option("fields", ListOf(Str()), None, "flatten only these top-level fields (default: all)"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.flatten = self._flattener()

    @classmethod
    def fields(cls, conf, upstream, check):
        if upstream is None:
            return None
        sep = conf.separator
        index = sep + ("$*" if conf.arrays == "norikra" else "*")
        levels = conf.max_depth or 1 << 30

        def part(key: str) -> str:
            return _NORIKRA_BAD_IN_PATTERN.sub("_", key) if conf.sanitize == "norikra" else key

        out = []
        for path in upstream.paths:
            n = 1 if conf.fields is not None and path[0] not in conf.fields else min(len(path), levels + 1)
            if conf.arrays == "keep" and LIST in path[:n]:
                n = path.index(LIST)  # a list stays a list, and what is in it stays in it
            key = part(path[0]) + "".join(index if k == LIST else sep + part(k) for k in path[1:n])
            out.append((key, *path[n:]))
        return fields_of(out, upstream.many)

    def process(self, batch: Batch) -> Batch:
        flat = self.flatten
        return [(tag, t, flat(record)) for tag, t, record in batch]

    def _flattener(self) -> Callable[[Record], Record]:
        # one closure with every setting bound as a local: flatten is most of this
        # filter's cost, and attribute lookups per key would double it
        conf = self.conf
        sep: str = conf.separator
        keep_lists = conf.arrays == "keep"
        index = sep + ("$" if conf.arrays == "norikra" else "")
        bad = _NORIKRA_BAD.sub if conf.sanitize == "norikra" else None
        max_depth: int = conf.max_depth or 1 << 30
        fields = set(conf.fields) if conf.fields is not None else None
        counters = self.ctx.counters

        def put(out: Record, key: str, value: Any) -> None:
            if key in out:
                # documented rule: the first key keeps the name, later ones get ~2, ~3, ...
                counters["key_collisions"] += 1
                n = 2
                while f"{key}~{n}" in out:
                    n += 1
                key = f"{key}~{n}"
            out[key] = value

        def name(k: Any) -> str:
            return bad("_", str(k)) if bad else (k if type(k) is str else str(k))

        def nested(v: Any) -> bool:
            t = type(v)
            return bool(v) and (t is dict or (t is list and not keep_lists))

        def walk(out: Record, prefix: str, value: dict | list, depth: int) -> None:
            if depth > max_depth:
                put(out, prefix, value)
                return
            if type(value) is dict:
                keys: Any = [prefix + sep + (k if type(k) is str and not bad else name(k)) for k in value]
                values: Any = value.values()
            else:
                keys = [f"{prefix}{index}{i}" for i in range(len(value))]
                values = value
            for key, v in zip(keys, values):
                t = type(v)
                if v and (t is dict or (t is list and not keep_lists)):
                    walk(out, key, v, depth + 1)
                elif key in out:
                    put(out, key, v)
                else:
                    out[key] = v

        def flatten(record: Record) -> Record:
            out: Record = {}
            for k, v in record.items():
                key = name(k)
                if nested(v) and (fields is None or k in fields):
                    walk(out, key, v, 1)
                elif key in out:
                    put(out, key, v)
                else:
                    out[key] = v
            return out

        return flatten


PLUGIN = FlattenFilter
