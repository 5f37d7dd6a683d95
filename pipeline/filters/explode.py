"""Filter `explode`: one record per element of an array field."""

from __future__ import annotations

from ..config.fields import LIST, fields_of
from ..config.options import ListOf, Option, Str
from ..event import Batch, Record, get_path
from ..plugin import Filter


class ExplodeFilter(Filter):
    """One record per element of an array (`field: workers` gives one record per worker).

    Each record holds the parent's scalar fields (or only those in `keep`), the element's
    fields merged at the top level with `prefix` (or the whole element under `as`), and the
    element's position under `index_key`. Where an element field and a kept parent field
    share a name, the element's value wins (counted as `key_collisions`). Arrays inside the
    element (a worker's `cores`) stay as they are; explode again to split them too.
    A record whose field is missing or not an array passes unchanged (counted as `no_array`).
    """

    options = (
        Option("field", Str(), help="the array to split (a dotted path for a nested one)"),
        Option("keep", ListOf(Str()), None, "parent fields to copy into each record (default: its scalars)"),
        Option("as", Str(), None, "put the element under this key instead of merging its fields"),
        Option("prefix", Str(), "", "prefix of the element's fields when merged"),
        Option("index_key", Str(), "index", "key of the element's position in the array"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.under: str | None = getattr(conf, "as")

    @classmethod
    def fields(cls, conf, upstream, check):
        if upstream is None:
            return None
        at = tuple(conf.field.split("."))
        n = len(at)
        elements = [p[n + 1:] for p in upstream.paths if p[:n] == at and p[n:n + 1] == (LIST,)]
        if conf.keep is not None:
            parent = [p for p in upstream.paths if p[0] in conf.keep]
        else:
            parent = [p for p in upstream.paths if len(p) == 1]
        under = getattr(conf, "as")
        if under is not None:
            merged = [(under, *rest) for rest in elements]
        else:
            merged = [(conf.prefix + rest[0], *rest[1:]) if rest else (conf.field,) for rest in elements]
        return fields_of(parent + merged + [(conf.index_key,)], many=True)

    def _parent(self, record: Record) -> Record:
        if self.conf.keep is not None:
            return {k: record[k] for k in self.conf.keep if k in record}
        return {k: v for k, v in record.items() if not isinstance(v, (dict, list))}

    def process(self, batch: Batch) -> Batch:
        field, prefix, index_key, under = self.conf.field, self.conf.prefix, self.conf.index_key, self.under
        counters = self.ctx.counters
        out: Batch = []
        for tag, t, record in batch:
            items = get_path(record, field)
            if not isinstance(items, list):
                counters["no_array"] += 1
                out.append((tag, t, record))
                continue
            parent = self._parent(record)
            for i, element in enumerate(items):
                new = dict(parent)
                if under is not None or not isinstance(element, dict):
                    new[under or field] = element
                else:
                    for k, v in element.items():
                        key = prefix + k
                        if key in parent:
                            counters["key_collisions"] += 1
                        new[key] = v
                new[index_key] = i
                out.append((tag, t, new))
        return out


PLUGIN = ExplodeFilter
