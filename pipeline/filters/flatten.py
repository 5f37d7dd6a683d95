"""Filter `flatten`: nested maps and lists to one level of keys."""

from __future__ import annotations

import re
from typing import Any

from ..event import Batch, Record
from ..options import Enum, Int, ListOf, Option, Str
from ..plugin import Filter

_NORIKRA_BAD = re.compile(r"[^A-Za-z0-9_$]")


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
        self.sep: str = conf.separator
        self.keep_lists = conf.arrays == "keep"
        self.index_prefix = "$" if conf.arrays == "norikra" else ""
        self.sanitize = conf.sanitize == "norikra"
        self.max_depth: int = conf.max_depth or 1 << 30
        self.fields = set(conf.fields) if conf.fields is not None else None

    def process(self, batch: Batch) -> Batch:
        flat = self.flatten
        return [(tag, t, flat(record)) for tag, t, record in batch]

    def _key(self, part: Any) -> str:
        text = str(part)
        return _NORIKRA_BAD.sub("_", text) if self.sanitize else text

    def flatten(self, record: Record) -> Record:
        out: Record = {}
        fields = self.fields
        for k, v in record.items():
            key = self._key(k)
            if (type(v) is dict or type(v) is list) and v and (fields is None or k in fields):
                if type(v) is list and self.keep_lists:
                    self._put(out, key, v)
                else:
                    self._walk(out, key, v, 1)
            else:
                self._put(out, key, v)
        return out

    def _walk(self, out: Record, prefix: str, value: dict | list, depth: int) -> None:
        if depth >= self.max_depth + 1:
            self._put(out, prefix, value)
            return
        sep = self.sep
        if type(value) is dict:
            items: Any = value.items()
            names = None
        else:
            items = enumerate(value)
            names = self.index_prefix
        for k, v in items:
            key = f"{prefix}{sep}{names}{k}" if names is not None else f"{prefix}{sep}{self._key(k)}"
            if (type(v) is dict or (type(v) is list and not self.keep_lists)) and v:
                self._walk(out, key, v, depth + 1)
            else:
                self._put(out, key, v)

    def _put(self, out: Record, key: str, value: Any) -> None:
        if key not in out:
            out[key] = value
            return
        self.ctx.counters["key_collisions"] += 1
        n = 2
        while f"{key}~{n}" in out:
            n += 1
        out[f"{key}~{n}"] = value


PLUGIN = FlattenFilter
