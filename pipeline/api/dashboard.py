"""The dashboard's pages: `/` (one page of charts), its files under `/static/`, and
`/api/series`, the charted points as JSON (what the page polls each second).

Every file the page needs is in pipeline/api/static and served from here: it works on a
machine with no network beyond the pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import resources
from types import SimpleNamespace
from typing import TYPE_CHECKING

import orjson

from .messages import Request, Response, json_response
from .series import Store

if TYPE_CHECKING:
    from .server import ApiServer

log = logging.getLogger("pipeline.api")

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def _static_files() -> dict[str, tuple[bytes, str]]:
    """name -> (content, type): read once, and only these names are ever served."""
    folder = resources.files("pipeline.api").joinpath("static")
    out = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _TYPES:
            out[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return out


class Dashboard:
    def __init__(self, api: ApiServer, conf: SimpleNamespace):
        self.store = Store(conf)
        self.files = _static_files()
        self.unseen_after = conf.unseen_after
        for name in self.store.by_input:
            api.figures.taps.setdefault(name, []).append(self.store)
        api.route("GET", "/", self.page)
        api.route("GET", "/static/", self.static)
        api.route("GET", "/api/series", self.series)
        self.watch = asyncio.get_running_loop().create_task(self._warn_unseen())

    async def _warn_unseen(self) -> None:
        await asyncio.sleep(self.unseen_after)
        for panel in self.store.panels:
            if not panel.seen:
                log.warning("dashboard panel %d (%s): no record from %r had a number at %r in the first %s",
                            panel.index, panel.title, panel.input, panel.field,
                            f"{self.unseen_after:g}s")

    def _file(self, name: str) -> Response:
        found = self.files.get(name)
        if found is None:
            return json_response({"error": f"no file {name!r}", "files": sorted(self.files)}, 404)
        return Response(200, found[0], found[1])

    async def page(self, api: ApiServer, req: Request) -> Response:
        if req.path != "/":  # `/` takes everything under it; only the page itself is here
            return json_response({"error": f"no page {req.path}", "pages": sorted(api.routes)}, 404)
        return self._file("index.html")

    async def static(self, api: ApiServer, req: Request) -> Response:
        return self._file(req.path.removeprefix("/static/"))

    async def series(self, api: ApiServer, req: Request) -> Response:
        now = time.time()
        text = req.arg("since", "0") or "0"
        try:
            since = float(text)
        except ValueError:
            return json_response({"error": f"since is epoch seconds (or negative: seconds back), got {text!r}"},
                                 400)
        if since < 0:
            since += now
        panels = self.store.panels
        which = req.arg("panel")
        head = {"now": round(now, 3), "history": self.store.history, "step": self.store.step}
        if which is None:
            return _compact({**head, "panels": [p.doc(since) for p in panels]})
        if not (which.isdigit() and int(which) < len(panels)):
            return json_response({"error": f"panel is a number from 0 to {len(panels) - 1}, got {which!r}"}, 404)
        return _compact({**head, **panels[int(which)].doc(since)})


def _compact(doc: dict) -> Response:
    # an hour of 100 series is 720,000 numbers: one a line would be most of the answer
    return Response(200, orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE))
