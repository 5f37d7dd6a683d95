"""Filter `select`: keep only some fields."""

from __future__ import annotations

from ..config.fields import matches
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
        # a listed name can be one of many a pattern stands for (`workers.0.requests` of
        # flatten's `workers.*.requests`): that name is kept, with the pattern's kind
        return upstream.mapped(lambda p: [(name, *p[1:]) for name in conf.fields if matches(name, p[0])])

    def process(self, batch: Batch) -> Batch:
        fields = self.conf.fields
        return [(tag, t, {k: record[k] for k in fields if k in record}) for tag, t, record in batch]


PLUGIN = SelectFilter
