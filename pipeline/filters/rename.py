"""Filter `rename`: give fields new names."""

from __future__ import annotations

from ..event import Batch
from ..options import MapOf, Option, Str
from ..plugin import Filter


class RenameFilter(Filter):
    """Rename top-level fields (`{id: worker_id}`); fields that are absent are left alone."""

    options = (Option("fields", MapOf(Str()), help="old name -> new name"),)

    def process(self, batch: Batch) -> Batch:
        names = self.conf.fields
        out: Batch = []
        for tag, t, record in batch:
            if any(k in record for k in names):
                record = {names.get(k, k): v for k, v in record.items()}
            out.append((tag, t, record))
        return out


PLUGIN = RenameFilter
