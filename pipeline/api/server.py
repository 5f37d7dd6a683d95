"""The api's HTTP/1.1 server, on asyncio streams inside the pipeline's own event loop.

Routing is a table, path -> method -> handler, so that more pages (a dashboard) are one
`route()` each; a path ending in `/` takes everything under it. A handler gets the Request
and returns a Response: a whole body, or a stream of pieces sent chunked. One request per
connection: the clients (Prometheus, `tap`, `top`) ask once a second at most.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
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
            413: "Request Header Fields Too Large", 421: "Misdirected Request", 500: "Internal Server Error",
            503: "Service Unavailable"}
#: a refused Host is logged at most this often
_REFUSED_LOG_SECONDS = 60.0


def host_name(header: str) -> str:
    """The name of a Host header, without its port, lower case, without a final dot."""
    host = header.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _loopback(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always loopback
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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
        #: Host names answered besides the address a request came to and loopback ones
        self.allowed_hosts = {host_name(h) for h in getattr(conf, "allowed_hosts", ())} | {host_name(self.host)}
        self._refused_logged = 0.0
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
            response = self._misdirected(head, writer) or await self._answer(head)
            await self._send(writer, response, reader)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # stopping; not re-raised, or the stream server logs a traceback
        finally:
            self.connections.discard(task)
            writer.close()

    def _misdirected(self, head: bytes, writer: asyncio.StreamWriter) -> Response | None:
        """A refusal for a request naming a host that is not this api's: a web page can make a
        browser send requests to 127.0.0.1 under its own name (DNS rebinding), so a name is
        answered only if it is the address the request came to, a loopback name or one of
        `allowed_hosts`. A request with no Host (HTTP/1.0 tools) comes from no browser."""
        header = next((line.partition(b":")[2] for line in head.split(b"\r\n")[1:]
                       if line[:5].lower() == b"host:"), None)
        if header is None:
            return None
        name = host_name(header.decode("latin-1"))
        local = (writer.get_extra_info("sockname") or ("",))[0]
        if name in self.allowed_hosts or "*" in self.allowed_hosts or _loopback(name) or name == local.lower():
            return None
        now = time.monotonic()
        if now - self._refused_logged >= _REFUSED_LOG_SECONDS:
            self._refused_logged = now
            log.warning("api: refused a request for host %r (not the listen address, a loopback name or in "
                        "api.allowed_hosts; further ones this minute are not logged)", name[:100])
        return json_response({"error": f"host {name[:100]!r} is not served here: the api answers its listen "
                                       f"address, loopback names and api.allowed_hosts"}, 421)

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
        if response.on_socket is not None:
            response.on_socket(writer)
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
                    piece = b""  # the transport has a copy: not held twice while a slow reader is waited for
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
