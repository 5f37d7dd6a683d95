"""Sink `forward`: to fluentd (or another pipeline) over the forward protocol, acknowledged."""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ..codecs.forward_protocol import (
    as_bytes,
    by_tag,
    new_chunk_id,
    packed_forward,
    ping,
    shared_key_digest,
    unpacker,
)
from ..config.options import Bool, Duration, Enum, Int, ListOf, Option, Str, Struct
from ..event import Event, Item
from ..plugin import Sink

SERVER = Struct(
    Option("host", Str(), help="server address"),
    Option("port", Int(min=1, max=65535), 24224, "server port"),
    Option("weight", Int(min=0), 60, "share of the load, against the other servers' weights"),
    Option("standby", Bool(), False, "used only while no other server is available"),
    name="server",
)

TLS = Struct(
    Option("enabled", Bool(), True, "use TLS"),
    Option("ca", Str(), None, "CA file to verify the server (default: the system's)"),
    Option("cert", Str(), None, "client certificate file"),
    Option("key", Str(), None, "client key file"),
    Option("verify", Bool(), True, "verify the server's certificate and name"),
    Option("server_name", Str(), None, "name to check the certificate against (default: host)"),
    name="tls",
)


def client_tls(conf: Any) -> ssl.SSLContext | None:
    if conf is None or not conf.enabled:
        return None
    ctx = ssl.create_default_context(cafile=conf.ca)
    if not conf.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if conf.cert:
        ctx.load_cert_chain(conf.cert, conf.key)
    return ctx


class HandshakeRefused(ConnectionError):
    pass


@dataclass
class Server:
    host: str
    port: int
    weight: int
    standby: bool
    failures: int = 0
    retry_at: float = 0.0
    #: open keepalive connections no writer uses now, with when each was last used
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = field(default_factory=list)
    salt: str = field(default_factory=lambda: new_chunk_id())

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def available(self, now: float) -> bool:
        return now >= self.retry_at


class ForwardSink(Sink):
    """Send events to fluentd's in_forward (or this program's forward source).

    Each write is PackedForward messages (one per tag) with EventTime nanosecond times and
    a correct `size`; `compress: gzip` sends CompressedPackedForward. With `require_ack`
    (default) each message carries a unique `chunk` id and counts as delivered only when
    `{"ack": id}` comes back within `ack_timeout`; a reset, EOF or timeout before that means
    not delivered, and the runtime sends the chunk again (at-least-once).

    Events that came from a forward source are sent on as they came, without decoding.
    Up to `max_in_flight` chunks are on their way at once, each on its own connection,
    so waiting for one ack does not stall the others (1 keeps strict order).

    Servers are chosen by weight among those available; `standby` servers only while no
    other is. A server that fails is left alone with exponential backoff (up to
    `retry_max_interval`) and used again once it answers. `shared_key` runs fluentd's
    HELO/PING/PONG handshake; a refused key is an error naming the server.
    """

    options = (
        Option("servers", ListOf(SERVER), help="[{host, port, weight, standby}, ...]"),
        Option("require_ack", Bool(), True, "wait for fluentd's ack of every chunk"),
        Option("max_in_flight", Int(min=1, max=64), 4,
               "chunks sent and not yet acked at once, each on its own connection; 1 keeps strict order"),
        Option("ack_timeout", Duration(min=0.001), 30.0, "an ack not back by then means not delivered"),
        Option("compress", Enum("none", "gzip"), "none", "gzip sends CompressedPackedForward"),
        Option("tls", TLS, None, "TLS settings: {ca, cert, key, verify, server_name}"),
        Option("shared_key", Str(), None, "the servers' shared_key (fluentd <security>)", secret=True),
        Option("self_hostname", Str(), None, "our name in the handshake (default: the host name)"),
        Option("username", Str(), "", "user for fluentd's user_auth"),
        Option("password", Str(), "", "password for fluentd's user_auth", secret=True),
        Option("keepalive", Bool(), True, "keep connections open between writes"),
        Option("keepalive_timeout", Duration(min=0.001), 60.0, "close a connection idle this long"),
        Option("connect_timeout", Duration(min=0.001), 5.0, "connect (and handshake) timeout"),
        Option("write_timeout", Duration(min=0.001), 10.0, "sending timeout"),
    )

    takes_packed = True

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.max_in_flight = conf.max_in_flight
        self.servers = [Server(s.host, s.port, s.weight, s.standby) for s in conf.servers]
        self.tls = client_tls(conf.tls)
        self.hostname = conf.self_hostname or socket.gethostname()

    def _candidates(self) -> list[Server]:
        """Servers in the order to try: available primaries by weighted chance, then the
        standbys, which are reached only when every primary failed or is backing off."""
        now = time.monotonic()
        order: list[Server] = []
        for standby in (False, True):
            pool = [s for s in self.servers if s.standby == standby and s.available(now) and s.weight > 0]
            while pool:
                pick = random.choices(pool, weights=[s.weight for s in pool])[0]
                order.append(pick)
                pool.remove(pick)
        return order

    async def write(self, batch: list[Item]) -> None:  # type: ignore[override]
        candidates = self._candidates()
        if not candidates:
            soonest = min(self.servers, key=lambda s: s.retry_at)
            wait = max(0.0, soonest.retry_at - time.monotonic())
            raise ConnectionError(f"no server available (next retry of {soonest.name} in {wait:.1f}s)")
        messages = []
        for tag, (blobs, size) in by_tag(batch, self._unpackable).items():
            chunk = new_chunk_id() if self.conf.require_ack else None
            blob = blobs[0] if len(blobs) == 1 else b"".join(blobs)
            messages.append((chunk, packed_forward(tag, blob, size, chunk, self.conf.compress == "gzip")))
        problems = []
        for server in candidates:
            try:
                await self._send(server, messages)
            except (OSError, TimeoutError, ssl.SSLError, msgpack.UnpackException, ValueError) as e:
                self._failed(server)
                problems.append(f"server {server.name}: {_reason(e)}")
                # logged here too: while another server takes the events, the write succeeds
                self.ctx.health(server.name, False, f"server {server.name} failed: {_reason(e)}; "
                                "retrying it with backoff", count=False)
                continue
            server.failures = 0
            self.ctx.health(server.name, True, f"server {server.name} answers again")
            return
        raise ConnectionError("; ".join(problems))

    def _unpackable(self, event: Event, e: Exception) -> None:
        self.ctx.error(f"record cannot be sent as msgpack ({e}): skipped", data=event[2], kind="unencodable")

    def _failed(self, server: Server) -> None:
        self._close(server)
        server.failures += 1
        backoff = min(self.conf.retry_max_interval, 0.5 * 2 ** min(server.failures - 1, 20))
        server.retry_at = time.monotonic() + backoff * random.uniform(0.5, 1.0)

    async def _send(self, server: Server, messages: list[tuple[str | None, bytes]]) -> None:
        now = time.monotonic()
        while server.idle:
            reader, writer, used = server.idle.pop()
            if now - used <= self.conf.keepalive_timeout and not writer.is_closing():
                break
            writer.close()
        else:
            reader, writer = await asyncio.wait_for(self._connect(server), self.conf.connect_timeout)
        try:
            for _, data in messages:
                writer.write(data)
            await asyncio.wait_for(writer.drain(), self.conf.write_timeout)
            if self.conf.require_ack:
                await asyncio.wait_for(self._acks(reader, {c for c, _ in messages}), self.conf.ack_timeout)
        except BaseException:
            writer.close()  # a connection with a message half sent or an ack owed is not reused
            raise
        self.ctx.counters["bytes_out"] += sum(len(data) for _, data in messages)
        if self.conf.keepalive:
            server.idle.append((reader, writer, time.monotonic()))
        else:
            writer.close()

    async def _acks(self, reader: asyncio.StreamReader, waiting: set[str | None]) -> None:
        unpack = unpacker(1 << 20)
        while waiting:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("connection closed before the ack")
            unpack.feed(data)
            for reply in unpack:
                if isinstance(reply, dict) and reply.get("ack") in waiting:
                    waiting.discard(reply["ack"])

    async def _connect(self, server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        tls = self.conf.tls
        server_name = (tls.server_name or server.host) if self.tls else None
        reader, writer = await asyncio.open_connection(server.host, server.port, ssl=self.tls,
                                                       server_hostname=server_name)
        if self.conf.shared_key is not None:
            try:
                await self._handshake(server, reader, writer)
            except BaseException:
                writer.close()
                raise
        return reader, writer

    async def _handshake(self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        unpack = unpacker(1 << 16)

        async def receive() -> Any:
            while True:
                for message in unpack:
                    return message
                data = await reader.read(65536)
                if not data:
                    raise HandshakeRefused("closed the connection during the handshake")
                unpack.feed(data)

        hello = await receive()
        if not (isinstance(hello, list) and len(hello) == 2 and hello[0] == "HELO" and isinstance(hello[1], dict)):
            raise HandshakeRefused("did not start the handshake (no HELO): is shared_key set on the server?")
        nonce, auth = as_bytes(hello[1].get("nonce", b"")), as_bytes(hello[1].get("auth", b""))
        key = self.conf.shared_key
        writer.write(ping(self.hostname, server.salt, nonce, key, auth, self.conf.username, self.conf.password))
        await writer.drain()
        pong = await receive()
        if not (isinstance(pong, list) and len(pong) == 5 and pong[0] == "PONG"):
            raise HandshakeRefused(f"answered the handshake with {pong!r}")
        if not pong[1]:
            raise HandshakeRefused(f"refused the handshake: {pong[2]}")
        if pong[4] != shared_key_digest(server.salt, pong[3], nonce, key):
            raise HandshakeRefused("proved no knowledge of the shared_key")

    def _close(self, server: Server) -> None:
        for _, writer, _ in server.idle:
            writer.close()
        server.idle.clear()

    async def stop(self) -> None:
        for server in self.servers:
            self._close(server)


def _reason(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    text = str(e) or type(e).__name__
    return getattr(e, "strerror", None) or text


PLUGIN = ForwardSink
