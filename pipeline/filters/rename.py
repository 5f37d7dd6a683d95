"""Filter `rename`: give fields new names."""

from __future__ import annotations

from ..config.fields import Path, matches
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

        def renamed(p: Path) -> list[Path]:
            if p[0] in names:
                return [(names[p[0]], *p[1:])]
            # an old name that is one of a pattern's (`workers.0.tx` of `workers.*.tx`): the
            # new name, and the pattern for the others
            return [(new, *p[1:]) for old, new in names.items() if matches(old, p[0])] + [p]
        return upstream.mapped(renamed)

    def process(self, batch: Batch) -> Batch:
        names = self.conf.fields
        out: Batch = []
        for tag, t, record in batch:
            if any(k in record for k in names):
                record = {names.get(k, k): v for k, v in record.items()}
            out.append((tag, t, record))
        return out


PLUGIN = RenameFilter
