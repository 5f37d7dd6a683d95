"""Filter `rename`: give fields new names."""

from __future__ import annotations

from ..config.fields import fields_of
from ..config.options import MapOf, Option, Str
from ..event import Batch
from ..plugin import Filter


class RenameFilter(Filter):
    """Rename top-level fields (`{id: worker_id}`); fields that are absent are left alone."""

    options = (Option("fields", MapOf(Str()), help="old name -> new name"),)

    @classmethod
    def fields(cls, conf, upstream, check):
        if upstream is None:
            return None
        names = conf.fields
        return fields_of(((names.get(p[0], p[0]), *p[1:]) for p in upstream.paths), upstream.many)

    def process(self, batch: Batch) -> Batch:
        names = self.conf.fields
        out: Batch = []
        for tag, t, record in batch:
            if any(k in record for k in names):
                record = {names.get(k, k): v for k, v in record.items()}
            out.append((tag, t, record))
        return out


PLUGIN = RenameFilter
