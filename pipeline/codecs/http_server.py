"""An HTTP/1.1 server for the sources that take POSTed data: keep-alive, bodies by
Content-Length or chunked, `Expect: 100-continue`, gzip bodies inflated in steps, and bounds
on all of it (body size, inflated size, head size, connections, idle time: see connections.py).

A handler gets a whole Request and returns a Reply; what cannot become a Request (a head that
does not parse, a body past `max_body`) is answered here (400, 413, 431) and its connection
closed, since the rest of what the peer sends cannot be told from a next request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from .connections import READ_SIZE, Connection, Connections
from .forward_protocol import ProtocolError, TooLarge, inflate

if TYPE_CHECKING:
    from ..engine.context import Context

#: a request head larger than this is refused (431)
MAX_HEAD = 64 * 1024
REASONS = {100: "Continue", 200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
           404: "Not Found", 405: "Method Not Allowed", 411: "Length Required", 413: "Content Too Large",
           415: "Unsupported Media Type", 417: "Expectation Failed", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Request:
    method: str
    #: the path, %-decoded
    path: str
    query: dict[str, list[str]]
    #: names in lower case
    headers: dict[str, str]
    #: inflated, if it came gzipped
    body: bytes = b""
    origin: str = ""
    #: the request target as sent (%-encoded path and query)
    target: str = ""

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default


@dataclass
class Reply:
    status: int
    text: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class Refused(Exception):
    """A request answered with `status` and the connection closed."""

    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status


Handler = Callable[[Request], Awaitable[Reply]]
#: told of a request refused here: (status, why, origin, what of the body was read)
OnRefused = Callable[[int, str, str, bytes], Awaitable[None]]


class HttpServer:
    def __init__(self, ctx: Context, handler: Handler, on_refused: OnRefused, *, max_body: int,
                 connections: Connections):
        self.ctx = ctx
        self.handler = handler
        self.on_refused = on_refused
        self.max_body = max_body
        self.connections = connections
        self.server: asyncio.Server | None = None
        self.port = 0

    async def serve(self, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        """Listen and serve until cancelled."""
        self.server = await self.connections.listen(self._connection, host, port, tls)
        self.port = self.server.sockets[0].getsockname()[1]
        self.ctx.log.info("listening on %s://%s:%d", "https" if tls else "http", host, self.port)
        await self.connections.serve(self.server)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        await self.connections.close_all()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.connections.handle(reader, writer, self._converse, ())

    async def _converse(self, conn: Connection) -> None:
        writer = conn.writer
        while True:
            try:
                request, keep_alive = await self._request(conn)
            except Refused as e:
                await self.on_refused(e.status, str(e), conn.origin, b"")
                self._send(writer, Reply(e.status, f"{e}\n"), keep_alive=False)
                await writer.drain()
                return
            if request is None:
                return
            reply = await self.handler(request)
            self._send(writer, reply, keep_alive)
            await writer.drain()
            if not keep_alive:
                return

    async def _request(self, conn: Connection) -> tuple[Request | None, bool]:
        """The next request and whether the connection stays open after it; None at the end."""
        reader = conn.reader
        try:
            head = await conn.waiting(reader.readuntil(b"\r\n\r\n"))
        except asyncio.IncompleteReadError as e:
            if e.partial.strip():
                raise
            return None, False
        except asyncio.LimitOverrunError:
            raise Refused(431, f"request head larger than {MAX_HEAD} bytes") from None
        if len(head) > MAX_HEAD:
            raise Refused(431, f"request head larger than {MAX_HEAD} bytes")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise Refused(400, "not an HTTP/1.x request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        body = await self._body(conn, headers)
        if headers.get("content-encoding", "identity").lower() == "gzip":
            body = await self._inflate(body)
        self.ctx.counters["bytes_in"] += len(head) + len(body)
        url = urlsplit(target)
        query = parse_qs(url.query, keep_blank_values=True) if url.query else {}
        return Request(method, unquote(url.path), query, headers, body, conn.origin, target), keep_alive

    async def _body(self, conn: Connection, headers: dict[str, str]) -> bytes:
        limit = self.max_body
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length_text = headers.get("content-length", "")
        if not chunked and not length_text:
            return b""
        length = 0
        if not chunked:
            if not length_text.isdigit():
                raise Refused(400, f"Content-Length is not a number: {length_text[:40]!r}")
            length = int(length_text)
            if length > limit:
                raise Refused(413, f"body of {length} bytes, past max_body_bytes ({limit})")
        if headers.get("expect", "").lower() == "100-continue":
            conn.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if not chunked:
            return await self._read(conn, length)
        parts: list[bytes] = []
        size = 0
        while True:
            line = await conn.waiting(conn.reader.readuntil(b"\r\n"))
            try:
                n = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise Refused(400, "malformed chunk size") from None
            if n == 0:
                while await conn.waiting(conn.reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            size += n
            if size > limit:
                raise Refused(413, f"chunked body past max_body_bytes ({limit})")
            parts.append(await self._read(conn, n))
            if await conn.waiting(conn.reader.readexactly(2)) != b"\r\n":
                raise Refused(400, "malformed chunk end")

    async def _read(self, conn: Connection, n: int) -> bytes:
        """`n` bytes, read as they come: a peer silent for idle_timeout is closed, not one
        slower than that over the whole body."""
        parts: list[bytes] = []
        while n > 0:
            part = await conn.waiting(conn.reader.read(min(n, READ_SIZE)))
            if not part:
                raise asyncio.IncompleteReadError(b"".join(parts), n)
            parts.append(part)
            n -= len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _inflate(self, body: bytes) -> bytes:
        """A gzip body inflated in steps between which other connections are served."""
        parts = []
        try:
            for part in inflate(body, self.max_body, "max_body_bytes"):
                parts.append(part)
                await asyncio.sleep(0)
        except TooLarge as e:
            raise Refused(413, f"gzip body: {e}") from None
        except ProtocolError as e:
            raise Refused(400, f"gzip body: {e}") from None
        return b"".join(parts)

    def _send(self, writer: asyncio.StreamWriter, reply: Reply, keep_alive: bool) -> None:
        body = reply.text.encode()
        head = [f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, '')}", "Content-Type: text/plain; charset=utf-8",
                f"Content-Length: {len(body)}"]
        if not keep_alive:
            head.append("Connection: close")
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
