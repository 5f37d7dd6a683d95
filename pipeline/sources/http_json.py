"""Poll a URL that returns JSON (app /stats, Spring actuator, BEAM vitals) and emit it as records."""

from __future__ import annotations

from typing import Any

from ..event import Batch
from ..formats import json_loads
from ..options import Bool, Option, Str
from ._http import HTTP_OPTIONS, HttpPollSource

_MISSING = object()


def select(doc: Any, path: str) -> Any:
    """`a.b.0.c`: map keys and list indices; _MISSING when the path is not there."""
    for part in path.split("."):
        if isinstance(doc, dict):
            doc = doc.get(part, _MISSING)
        elif isinstance(doc, list) and part.lstrip("-").isdigit() and -len(doc) <= int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return _MISSING
        if doc is _MISSING:
            return doc
    return doc


def _record(value: Any) -> dict:
    return value if isinstance(value, dict) else {"value": value}


class HttpJson(HttpPollSource):
    """Poll a URL that returns JSON; emit the document, a part of it, or one record per array element."""

    default_headers = {"Accept": "application/json"}
    options = HTTP_OPTIONS + (
        Option("path", Str(), None, "dotted path to the part to emit (list indices are numbers)"),
        Option("split", Bool(), False, "emit one record per element of the (selected) array"),
    )

    async def poll(self) -> Batch:
        got = await self.fetch()
        if got is None:
            return []
        body, _ = got
        try:
            doc = json_loads(body)
        except ValueError as e:
            self.ctx.error(f"not JSON: {e}", origin=self.conf.url, data=body, kind="bad_json")
            return []
        if self.conf.path:
            doc = select(doc, self.conf.path)
            if doc is _MISSING:
                self.ctx.error(f"path {self.conf.path!r} not in the document", origin=self.conf.url,
                               data=body, kind="bad_path")
                return []
        if self.conf.split:
            if not isinstance(doc, list):
                self.ctx.error("split: the selected value is not an array", origin=self.conf.url,
                               data=body, kind="bad_path")
                return []
            return [self.event(_record(v)) for v in doc]
        return [self.event(_record(doc))]


PLUGIN = HttpJson
