"""The connections of a server source (forward, http, syslog): bounded in number, each closed when
silent too long, so that idle or trickling peers can neither lock good senders out nor use
up file descriptors.

Past `max_connections`, a new connection takes the place of the one that has waited longest
for input (all it sent was answered, or it is sent again), or is closed when every one is
busy; a connection that sends nothing for `idle_timeout` is closed. The soft RLIMIT_NOFILE
is raised to fit max_connections where the hard one allows.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..config.options import Duration, Int, Option, Str, Struct

if TYPE_CHECKING:
    from ..engine.context import Context

T = TypeVar("T")

READ_SIZE = 256 * 1024
#: connections accepted at once before any is looked at (asyncio's accept loop). Room is
#: kept for three such bursts (a closed connection's descriptor is freed two turns of the
#: event loop later, and each turn may accept a burst) and for everything else (buffers,
#: sinks, the listener): past the limit minus these, accept() would fail with EMFILE for all
BACKLOG = 100
FD_RESERVE = 3 * BACKLOG + 64

SERVER_TLS = Struct(
    Option("cert", Str(), help="server certificate file"),
    Option("key", Str(), help="server key file"),
    Option("ca", Str(), None, "CA file: when set, clients must present a certificate it signed"),
    name="tls",
)
USER = Struct(Option("username", Str(), help="user name"), Option("password", Str(), help="password", secret=True),
              name="user")
MAX_CONNECTIONS = Option("max_connections", Int(min=1), 1000,
                         "connections open at once; past it the one idle longest is closed for the new one")


def idle_timeout(default: float) -> Option:
    return Option("idle_timeout", Duration(min=0.01), default, "close a connection that sends nothing this long")


def server_tls(conf: Any) -> ssl.SSLContext | None:
    """The SSL context of a server from its `tls` option (SERVER_TLS), None without."""
    if conf is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=conf.ca)
    ctx.load_cert_chain(conf.cert, conf.key)
    if conf.ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class Connection:
    """One connection: `waiting_since` is when it began to wait for input (None while its
    input is worked on), what the idle sweep and make_room go by."""

    __slots__ = ("task", "reader", "writer", "origin", "waiting_since", "closed")

    def __init__(self, task: asyncio.Task[None], reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 origin: str) -> None:
        self.task, self.reader, self.writer, self.origin = task, reader, writer, origin
        self.waiting_since: float | None = None
        self.closed = ""

    async def waiting(self, awaitable: Awaitable[T]) -> T:
        """`awaitable` (a read), counted as waiting for input while it runs."""
        self.waiting_since = time.monotonic()
        try:
            return await awaitable
        finally:
            self.waiting_since = None

    async def read(self) -> bytes:
        return await self.waiting(self.reader.read(READ_SIZE))

    def close(self, reason: str) -> None:
        """Now: its descriptor is free before the next accept()."""
        self.closed, self.waiting_since = reason, None
        self.writer.transport.abort()
        self.task.cancel()


class Connections:
    """A server's open connections, at most `max_connections` (lowered to the open file limit)."""

    def __init__(self, ctx: Context, max_connections: int, idle_timeout: float) -> None:
        self.ctx = ctx
        self.wanted = self.max = max_connections
        self.idle_timeout = idle_timeout
        self.open: dict[asyncio.Task[None], Connection] = {}

    def fit_fd_limit(self) -> None:
        want = self.wanted + FD_RESERVE
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < want:
            soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            except (ValueError, OSError):
                soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            if soft < want:
                self.max = max(1, soft - FD_RESERVE)
                self.ctx.log.warning("max_connections %d lowered to %d: the open file limit is %d",
                                     self.wanted, self.max, soft)

    async def listen(self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
                     host: str, port: int, tls: ssl.SSLContext | None, start_serving: bool = True) -> asyncio.Server:
        self.fit_fd_limit()
        return await asyncio.start_server(handler, host, port, ssl=tls, limit=READ_SIZE, backlog=BACKLOG,
                                          start_serving=start_serving)

    async def serve(self, server: asyncio.Server) -> None:
        """Serve until cancelled, closing idle connections."""
        sweeper = asyncio.create_task(self.close_idle())
        try:
            await server.serve_forever()
        finally:
            sweeper.cancel()
            server.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     converse: Callable[[Connection], Awaitable[None]], bad_input: tuple[type[Exception], ...]) -> None:
        """A connection handler's life: `converse(conn)` within the bounds. `bad_input` it raises
        closes the connection as a logged, counted error of the peer's (of the exception's
        `kind`, else protocol_error); a bug costs this connection only."""
        conn = self.add(reader, writer)
        if conn is None:
            return
        try:
            await converse(conn)
        except bad_input as e:
            self.ctx.error(f"connection closed: {e}", origin=conn.origin,
                           kind=getattr(e, "kind", "protocol_error"))
        except (ConnectionError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError) as e:
            self.ctx.count("connection_errors")
            self.ctx.log.debug("connection from %s: %s", conn.origin, e)
        except asyncio.CancelledError:
            # stopping, or closed by close_idle/_make_room: what was not answered is sent again.
            # Not re-raised: Python 3.11's stream server logs a cancelled handler as an error
            self.ctx.log.debug("connection from %s closed: %s", conn.origin, conn.closed or "shutdown")
        except Exception as e:  # one log line a minute
            self.ctx.unexpected("connection handler", e, origin=conn.origin)
        finally:
            self.remove(conn)

    def add(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Connection | None:
        """The calling handler's connection, or None (it was closed: no room)."""
        peer = writer.get_extra_info("peername")
        origin = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else (peer or "unix socket")
        self.ctx.count("connections")
        task = asyncio.current_task()
        assert task is not None
        if len(self.open) >= self.max and not self._make_room(origin):
            writer.transport.abort()
            return None
        conn = self.open[task] = Connection(task, reader, writer, origin)
        self.ctx.gauges["connections"] = len(self.open)
        return conn

    def remove(self, conn: Connection) -> None:
        self.open.pop(conn.task, None)
        self.ctx.gauges["connections"] = len(self.open)
        conn.writer.close()

    def _make_room(self, origin: str) -> bool:
        """At max_connections: close the connection waiting longest for input, if any."""
        waiting = [c for c in self.open.values() if c.waiting_since is not None]
        if not waiting:
            self.ctx.count("connections_refused")
            self.ctx.limited(logging.WARNING, "connections_refused",
                             f"{self.max} connections (max_connections), all busy: "
                             f"the new one from {origin} is closed")
            return False
        oldest = min(waiting, key=lambda c: c.waiting_since or 0.0)
        self.ctx.count("connections_replaced")
        self.ctx.limited(logging.WARNING, "connections_replaced",
                         f"{self.max} connections (max_connections): closed the one from "
                         f"{oldest.origin}, idle {time.monotonic() - (oldest.waiting_since or 0.0):.0f}s, "
                         f"for a new one from {origin}")
        oldest.close("replaced by a new connection (max_connections)")
        del self.open[oldest.task]  # now: the next new one in this burst needs room too
        return True

    async def close_idle(self) -> None:
        """Run for the server's life: close the connections silent for idle_timeout."""
        timeout = self.idle_timeout
        while True:
            await asyncio.sleep(min(timeout, 60.0) / 4)
            now = time.monotonic()
            for conn in list(self.open.values()):
                if conn.waiting_since is not None and now - conn.waiting_since >= timeout:
                    self.ctx.count("connections_idle_closed")
                    conn.close(f"idle for {timeout:g}s (idle_timeout)")

    async def close_all(self) -> None:
        for conn in list(self.open.values()):
            conn.close("shutdown")
        await asyncio.gather(*self.open, return_exceptions=True)
