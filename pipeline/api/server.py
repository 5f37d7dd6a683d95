"""The api's HTTP/1.1 server, on asyncio streams inside the pipeline's own event loop.

Routing is a table, path -> method -> handler, so that more pages (a dashboard) are one
`route()` each; a path ending in `/` takes everything under it. A handler gets the Request
and returns a Response: a whole body, or a stream of pieces sent chunked. One request per
connection: the clients (Prometheus, `tap`, `top`) ask once a second at most.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..config.addresses import parse_listen
from ..engine.context import RateLimitedLog
from ..engine.figures import Figures, exposition
from .messages import Request, Response, json_response
from .status import components, health

log = logging.getLogger("pipeline.api")
#: a page that fails for every request (a bug) is one line a minute, not one per request
_limited = RateLimitedLog(log)

#: a request head larger than this is refused (nothing here takes a body)
MAX_HEAD = 16 * 1024
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            413: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}


Handler = Callable[["ApiServer", Request], Awaitable[Response]]


async def _healthz(api: ApiServer, req: Request) -> Response:
    status, doc = health(api.figures)
    return json_response(doc, status)


async def _metrics(api: ApiServer, req: Request) -> Response:
    return Response(200, exposition(api.figures.families()).encode(), PROMETHEUS_TEXT)


async def _components(api: ApiServer, req: Request) -> Response:
    return json_response(components(api.figures))


async def _tap(api: ApiServer, req: Request) -> Response:
    from .tap import tap_response

    return tap_response(api.figures, req)


#: what every server answers; ApiServer.route() adds to its own copy
ROUTES: dict[str, dict[str, Handler]] = {
    "/healthz": {"GET": _healthz},
    "/metrics": {"GET": _metrics},
    "/api/components": {"GET": _components},
    "/api/tap": {"GET": _tap},
}


class ApiServer:
    def __init__(self, figures: Figures, conf: SimpleNamespace):
        #: all the api sees of the running graph: what the engine hands it
        self.figures = figures
        self.host, self.port = parse_listen(conf.address)
        self.routes = {path: dict(methods) for path, methods in ROUTES.items()}
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.Task[Any]] = set()
        self.dashboard: Any = None
        if getattr(conf, "dashboard", None) is not None:
            from .dashboard import Dashboard

            self.dashboard = Dashboard(self, conf.dashboard)

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes.setdefault(path, {})[method] = handler

    def _find(self, path: str) -> dict[str, Handler] | None:
        if path in self.routes:
            return self.routes[path]
        under = [p for p in self.routes if p.endswith("/") and path.startswith(p)]
        return self.routes[max(under, key=len)] if under else None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_HEAD)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("serving /healthz, /metrics, /api/components, taps%s on http://%s:%d",
                 " and the dashboard (/)" if self.dashboard is not None else "",
                 f"[{self.host}]" if ":" in self.host else self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.dashboard is not None:
            self.dashboard.watch.cancel()
        for taps in list(self.figures.taps.values()):
            for tap in taps:
                tap.close()
        if self.connections:  # taps send their last lines; a slow client is not waited for long
            await asyncio.wait(list(self.connections), timeout=2)
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            except asyncio.LimitOverrunError:
                await self._send(writer, Response(413, b"request head too large\n", "text/plain"))
                return
            response = await self._answer(head)
            await self._send(writer, response, reader)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # stopping; not re-raised, or the stream server logs a traceback
        finally:
            self.connections.discard(task)
            writer.close()

    async def _answer(self, head: bytes) -> Response:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return Response(400, b"not an HTTP request\n", "text/plain")
        method, target = parts[0], urlsplit(parts[1])
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        methods = self._find(unquote(target.path))
        if methods is None:
            return json_response({"error": f"no page {target.path}", "pages": sorted(self.routes)}, 404)
        handler = methods.get(method)
        if handler is None:
            response = json_response({"error": f"{method} is not allowed here"}, 405)
            response.headers["Allow"] = ", ".join(sorted(methods))
            return response
        request = Request(method, unquote(target.path), parse_qs(target.query), headers)
        try:
            return await handler(self, request)
        except Exception as e:  # a broken page must not take the server, or the pipeline, down
            _limited(logging.ERROR, f"{method} {target.path} {type(e).__name__}",
                     f"{method} {target.path} failed: {e!r}", exc=e)
            return json_response({"error": f"internal error: {e!r}"}, 500)

    async def _send(self, writer: asyncio.StreamWriter, response: Response,
                    reader: asyncio.StreamReader | None = None) -> None:
        reason = _REASONS.get(response.status, "")
        head = [f"HTTP/1.1 {response.status} {reason}", f"Content-Type: {response.content_type}",
                "Connection: close", "Cache-Control: no-store"]
        head += [f"{k}: {v}" for k, v in response.headers.items()]
        if response.stream is None:
            head.append(f"Content-Length: {len(response.body)}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)
            await writer.drain()
            return
        head.append("Transfer-Encoding: chunked")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        # the client leaving shows as the end of its side: a stream that waits for events
        # sees it at its next (at most one second away) empty piece
        gone = asyncio.ensure_future(reader.read(1)) if reader is not None else None
        try:
            async for piece in response.stream:
                if gone is not None and gone.done():
                    return
                if piece:
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            if gone is not None:
                gone.cancel()
            await response.stream.aclose()


async def start_api(figures: Figures, conf: SimpleNamespace) -> ApiServer:
    api = ApiServer(figures, conf)
    await api.start()
    return api
