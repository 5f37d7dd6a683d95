"""The connections a listening source keeps open (forward, syslog): at most `max_connections`,
and none silent past `idle_timeout`, so idle or trickling peers can neither lock good senders
out nor use up the file descriptors."""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..config.options import Duration, Int, Option, Str, Struct
from ..engine.context import Context

READ_SIZE = 256 * 1024
#: connections accepted at once before any is looked at (asyncio's accept loop). Room is
#: kept for three such bursts (a closed connection's descriptor is freed two turns of the
#: event loop later, and each turn may accept a burst) and for everything else (buffers,
#: sinks, the listener): past the limit minus these, accept() would fail with EMFILE for all
BACKLOG = 100
FD_RESERVE = 3 * BACKLOG + 64

OPTIONS = (
    Option("max_connections", Int(min=1), 1000,
           "connections open at once; past it the one idle longest is closed for the new one"),
    Option("idle_timeout", Duration(min=0.01), 300.0, "close a connection that sends nothing this long"),
)

TLS = Struct(
    Option("cert", Str(), help="server certificate file"),
    Option("key", Str(), help="server key file"),
    Option("ca", Str(), None, "CA file: when set, clients must present a certificate it signed"),
    name="tls",
)


def server_tls(conf: Any) -> ssl.SSLContext | None:
    """The server side of a `TLS` option's value (None: plain TCP)."""
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

    def __init__(self, task: asyncio.Task[Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 origin: str) -> None:
        self.task, self.reader, self.writer, self.origin = task, reader, writer, origin
        self.waiting_since: float | None = None
        self.closed = ""

    async def read(self) -> bytes:
        self.waiting_since = time.monotonic()
        try:
            return await self.reader.read(READ_SIZE)
        finally:
            self.waiting_since = None

    def close(self, reason: str) -> None:
        """Now: its descriptor is free before the next accept()."""
        self.closed, self.waiting_since = reason, None
        self.writer.transport.abort()
        self.task.cancel()


class Connections:
    """The open connections of one source, bounded by its `max_connections` and `idle_timeout`
    (OPTIONS). `open` one per accepted connection, `forget` it at its end; `sweep` runs beside
    the server."""

    def __init__(self, ctx: Context, conf: Any) -> None:
        self.ctx = ctx
        self.idle_timeout: float = conf.idle_timeout
        self.max: int = conf.max_connections
        self.open_ones: dict[asyncio.Task[Any], Connection] = {}

    def fit_fd_limit(self) -> None:
        """Raise the soft RLIMIT_NOFILE to fit max_connections where the hard one allows, else
        lower max_connections (said once)."""
        want = self.max + FD_RESERVE
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < want:
            soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            except (ValueError, OSError):
                soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            if soft < want:
                wanted, self.max = self.max, max(1, soft - FD_RESERVE)
                self.ctx.log.warning("max_connections %d lowered to %d: the open file limit is %d",
                                     wanted, self.max, soft)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    converse: Callable[[Connection], Awaitable[None]], bad_input: tuple[type[Exception], ...]) -> None:
        """A connection handler's life: `converse(conn)` within the bounds; `bad_input` it raises
        closes the connection as a logged, counted error of the peer's."""
        conn = self.open(reader, writer)
        if conn is None:
            return
        try:
            await converse(conn)
        except bad_input as e:
            self.ctx.error(f"connection closed: {e}", origin=conn.origin, kind="protocol_error")
        except (ConnectionError, ssl.SSLError, TimeoutError) as e:
            self.ctx.count("connection_errors")
            self.ctx.log.debug("connection from %s: %s", conn.origin, e)
        except asyncio.CancelledError:
            # stopping, or closed by sweep/_make_room. Not re-raised: Python 3.11's stream
            # server logs a cancelled handler as an error with a traceback
            self.ctx.log.debug("connection from %s closed: %s", conn.origin, conn.closed or "shutdown")
        except Exception as e:  # a bug must cost this connection only, and one log line a minute
            self.ctx.unexpected("connection handler", e, origin=conn.origin)
        finally:
            self.forget(conn)

    def open(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Connection | None:
        """The connection of the calling handler task, counted; None (and it is closed) when
        max_connections are open and all busy."""
        peer = writer.get_extra_info("peername")
        origin = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else (peer or "unix socket")
        self.ctx.count("connections")
        task = asyncio.current_task()
        assert task is not None
        if len(self.open_ones) >= self.max and not self._make_room(origin):
            writer.transport.abort()
            return None
        conn = self.open_ones[task] = Connection(task, reader, writer, origin)
        self.ctx.gauges["connections"] = len(self.open_ones)
        return conn

    def forget(self, conn: Connection) -> None:
        self.open_ones.pop(conn.task, None)
        self.ctx.gauges["connections"] = len(self.open_ones)
        conn.writer.close()

    def _make_room(self, origin: str) -> bool:
        """At max_connections: close the connection waiting longest for input, if any."""
        waiting = [c for c in self.open_ones.values() if c.waiting_since is not None]
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
        del self.open_ones[oldest.task]  # now: the next new one in this burst needs room too
        return True

    async def serve_forever(self, server: asyncio.Server) -> None:
        """Run `server` until cancelled, closing idle connections meanwhile; then close it."""
        sweeper = asyncio.create_task(self.sweep())
        try:
            await server.serve_forever()
        finally:
            sweeper.cancel()
            server.close()

    async def sweep(self) -> None:
        """Close the connections idle for idle_timeout, until cancelled."""
        timeout = self.idle_timeout
        while True:
            await asyncio.sleep(min(timeout, 60.0) / 4)
            now = time.monotonic()
            for conn in list(self.open_ones.values()):
                if conn.waiting_since is not None and now - conn.waiting_since >= timeout:
                    self.ctx.count("connections_idle_closed")
                    conn.close(f"idle for {timeout:g}s (idle_timeout)")

    async def close_all(self) -> None:
        for conn in list(self.open_ones.values()):
            conn.close("shutdown")
        await asyncio.gather(*self.open_ones, return_exceptions=True)
