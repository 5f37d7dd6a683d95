"""Filter `select`: keep only some fields."""

from __future__ import annotations

from ..config.fields import fields_of
from ..config.options import ListOf, Option, Str
from ..event import Batch
from ..plugin import Filter


class SelectFilter(Filter):
    """Keep only the listed top-level fields, in that order; absent ones are left out."""

    options = (Option("fields", ListOf(Str()), help="the fields to keep"),)

    @classmethod
    def fields(cls, conf, upstream, check):
        if upstream is None:
            return None
        return fields_of((p for p in upstream.paths if p[0] in conf.fields), upstream.many)

    def process(self, batch: Batch) -> Batch:
        fields = self.conf.fields
        return [(tag, t, {k: record[k] for k in fields if k in record}) for tag, t, record in batch]


PLUGIN = SelectFilter
