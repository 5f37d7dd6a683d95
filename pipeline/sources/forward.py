"""Source `forward`: receive the fluentd forward protocol (fluent-logger, out_forward, Fluent Bit)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any

import msgpack

from ..codecs import edge
from ..codecs.connections import (
    MAX_CONNECTIONS,
    SERVER_TLS,
    USER,
    Connection,
    Connections,
    idle_timeout,
    server_tls,
)
from ..codecs.forward_messages import EntrySlices, Intake, ack_replies, is_gzipped, read_message
from ..codecs.forward_protocol import (
    ProtocolError,
    as_bytes,
    helo,
    incomplete,
    inflate,
    password_digest,
    shared_key_digest,
    unpack_items,
    unpacker,
)
from ..codecs.json_stream import JsonStream, JsonStreamError
from ..codecs.quote import quoted
from ..config.options import Bool, Enum, Int, ListOf, Option, Size, Str
from ..engine.ack import Ack
from ..event import Batch
from ..plugin import Emit, StreamSource


class ForwardSource(StreamSource):
    """Listen for the forward protocol: Message, Forward, PackedForward and
    CompressedPackedForward, integer or EventTime times, msgpack or JSON connections.

    An ack (`{"ack": chunk}`) is sent only after the events are in every sink's buffer
    (with a file buffer: on disk), so an acked event is never lost; with `ack: delivery`
    only once every sink has written them (a memory buffer's events then survive a kill
    of this process too: the sender sends again what it had no ack for). PackedForward entries
    in the usual `[EventTime, record]` form are not decoded here: their framing is
    checked and they go on as they came, to be decoded only by a filter or a sink that
    reads records (a relay to fluentd never decodes them). Malformed input
    (garbage, wrong types, a message past `max_message_bytes`, a half-sent message)
    closes that one connection with a logged reason; the others go on. Stricter than
    fluentd: a PackedForward whose last entry is cut off is refused, not acked, so the
    sender sends it again. UDP heartbeats on the same port are answered as fluentd does.
    A message past `max_message_events` is refused unacked; a large one goes on in slices,
    each waiting for room in the buffers (a gzip bomb costs its bytes, not decoded events).

    Past `max_connections`, a new connection takes the place of the one that has waited
    longest for input (all it sent was acked, or it is resent), or is closed when every
    one is busy; a connection that sends nothing for `idle_timeout` is closed. So idle or
    trickling connections cannot lock good senders out, nor use up file descriptors
    (the soft RLIMIT_NOFILE is raised to fit max_connections where the hard one allows).
    """

    endless = True
    options = (
        Option("bind", Str(), "127.0.0.1", "address to listen on (0.0.0.0 for every interface)"),
        Option("port", Int(min=0, max=65535), 24224, "TCP and UDP port"),
        Option("max_message_bytes", Size(), 64 * 1024 * 1024, "largest message (and inflated blob) taken"),
        Option("max_message_events", Int(min=1), 1_000_000,
               "most events one message may hold; one with more is refused (not acked), however small "
               "it was compressed"),
        Option("shared_key", Str(), None, "require fluentd's HELO/PING/PONG handshake with this key",
               secret=True),
        Option("self_hostname", Str(), None, "our name in the handshake (default: the host name)"),
        Option("users", ListOf(USER), [], "with shared_key: accepted {username, password}"),
        Option("tls", SERVER_TLS, None, "TLS settings: {cert, key, ca}"),
        Option("heartbeat", Bool(), True, "answer UDP heartbeats on the same port"),
        Option("ack", Enum("buffer", "delivery"), "buffer",
               "when a chunk's ack is sent: once its events are in every sink's buffer, or once "
               "every sink has written them (delivery: a connection waits for that before reading on)"),
        MAX_CONNECTIONS,
        idle_timeout(300.0),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.hostname = conf.self_hostname or socket.gethostname()
        self.server: asyncio.Server | None = None
        self.udp: asyncio.DatagramTransport | None = None
        self.port: int = conf.port
        self.connections = Connections(ctx, conf.max_connections, conf.idle_timeout)

    def claims(self) -> set[str]:
        return {f"port {self.conf.port}"} if self.conf.port else set()

    async def start(self) -> None:
        """Bind here, not in run(): a port in use stops the start (and a reload) with the
        component named, instead of a source that quietly never listens. Connections are
        taken only once run() has somewhere to send their events."""
        self.server = await self.connections.listen(self._connection, self.conf.bind, self.conf.port,
                                                    server_tls(self.conf.tls), start_serving=False)
        self.port = self.server.sockets[0].getsockname()[1]
        if self.conf.heartbeat:
            loop = asyncio.get_running_loop()
            try:
                self.udp, _ = await loop.create_datagram_endpoint(_Heartbeat, local_addr=(self.conf.bind, self.port))
            except OSError:
                self.server.close()
                raise

    async def run(self, emit: Emit) -> None:
        assert self.server is not None, "start() binds"
        self._emit = emit
        self.ctx.log.info("listening on %s:%d", self.conf.bind, self.port)
        try:
            await self.connections.serve(self.server)
        finally:
            self._close()

    def _close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.udp is not None:
            self.udp.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.connections.handle(reader, writer, self._converse, (ProtocolError, JsonStreamError))

    async def _converse(self, conn: Connection) -> None:
        unpack = unpacker(self.conf.max_message_bytes, records=True)
        if self.conf.shared_key is not None:
            await self._handshake(conn, conn.writer, unpack)
            await self._msgpack(conn, conn.writer, unpack, b"")
            return
        first = await conn.read()
        self.ctx.counters["bytes_in"] += len(first)
        if first[:1] in (b"{", b"["):
            await self._json(conn, conn.writer, first)
        elif first:
            await self._msgpack(conn, conn.writer, unpack, first)

    async def _msgpack(self, conn: Connection, writer, unpack, data: bytes) -> None:
        while True:
            try:
                unpack.feed(data)
            except msgpack.BufferFull:
                raise ProtocolError(f"message larger than max_message_bytes "
                                    f"({self.conf.max_message_bytes})") from None
            # every message of one read goes on together, then their acks (also what
            # came with the handshake's PING, before any read here)
            intake = Intake()
            try:
                for message in unpack:
                    self._message(message, intake, conn.origin,
                                  await self._inflate(message) if is_gzipped(message) else None)
            except (ValueError, TypeError, msgpack.UnpackException) as e:  # TypeError: a map as a map key
                if isinstance(e, ProtocolError):
                    raise
                raise ProtocolError(f"malformed msgpack: {e}") from None
            finally:
                # what came before a bad message is taken and acked, as each was whole
                await self._accept(intake, conn.origin, writer, json_replies=False)
            data = await conn.read()
            self.ctx.counters["bytes_in"] += len(data)
            if not data:
                if incomplete(unpack):
                    raise ProtocolError("connection closed in the middle of a message (not acked)")
                return

    async def _inflate(self, message: list) -> list[tuple[int, int, int]]:
        """A CompressedPackedForward's blob, inflated in steps between which other
        connections are served, and its slices: its entries are walked as they come, so one
        past max_message_events is refused before the rest is inflated."""
        blob = bytearray()
        slices = EntrySlices(self.conf.max_message_events, self.conf.max_message_bytes)
        for part in inflate(as_bytes(message[1]), self.conf.max_message_bytes):
            blob += part
            slices.feed(part)
            await asyncio.sleep(0)
        message[1] = blob
        message[2] = {**message[2], "compressed": "text"}
        return slices.slices()

    async def _json(self, conn: Connection, writer, data: bytes) -> None:
        stream = JsonStream(self.conf.max_message_bytes)
        while data:
            for value in stream.feed(data):
                try:
                    message = json.loads(value.decode("utf-8", "surrogateescape"))
                except (ValueError, RecursionError) as e:
                    raise ProtocolError(f"malformed JSON: {e}") from None
                intake = Intake()
                self._message(message, intake, conn.origin,
                              await self._inflate(message) if is_gzipped(message) else None)
                await self._accept(intake, conn.origin, writer, json_replies=True)
            data = await conn.read()
            self.ctx.counters["bytes_in"] += len(data)
        if stream.pending:
            raise ProtocolError("connection closed in the middle of a JSON message")

    def _checked(self, batch: Batch, origin: str) -> Batch:
        """The events made to the rule of pipeline/codecs/edge.py, the refused ones reported (Packed
        runs are checked when decoded)."""
        given = [e[2] for e in batch]
        records, refused = edge.checked(given)
        if records is given:  # the usual case: one C call found nothing to change
            return batch
        for record, why in refused:
            self.ctx.error(f"record refused: {why}", origin=origin, data=record, kind="refused_record")
        gone = {id(r) for r, _ in refused}
        kept = [e for e in batch if id(e[2]) not in gone]
        return [(tag, t, r) for (tag, t, _), r in zip(kept, records)]

    async def _accept(self, intake: Intake, origin: str, writer: asyncio.StreamWriter, json_replies: bool) -> None:
        """Acks go out only once the events are in every sink's buffer (or delivered). A
        large message goes on a slice at a time: each waits for room in the buffers (overflow
        `block`), so they bound the memory it takes while it is taken in."""
        acks = intake.acks
        delivered = Ack() if acks and self.conf.ack == "delivery" else None
        if intake.batch:
            await self._emit(self._checked(intake.batch, origin), delivered)
        for group in intake.packed_groups():
            await self._emit.packed(group, delivered)
        for run in intake.loose:  # not in EventTime form: decoded here, a slice at a time
            events = unpack_items([run], self.ctx)
            if events:
                await self._emit(events, delivered)
        if delivered is not None:
            delivered.release()
            await delivered.wait()
        if acks:
            writer.write(ack_replies(acks, json_replies))
            await writer.drain()

    def _message(self, message: Any, intake: Intake, origin: str, slices: list[tuple[int, int, int]] | None) -> None:
        if read_message(message, intake, origin, self._bad_entry, self.conf.max_message_events, slices):
            self.ctx.counters["messages"] += 1

    def _bad_entry(self, entry: Any, origin: str) -> None:
        self.ctx.error("entry is not [time, record], skipped", origin=origin, data=entry)

    async def _handshake(self, conn: Connection, writer, unpack) -> None:
        nonce = os.urandom(16)
        auth = os.urandom(16) if self.conf.users else b""
        writer.write(helo(nonce, auth))
        await writer.drain()
        message = None
        while message is None:
            data = await asyncio.wait_for(conn.read(), 30)
            if not data:
                raise ConnectionError("closed during the handshake")
            try:
                unpack.feed(data)
                message = next(unpack, None)
            except (ValueError, TypeError, msgpack.UnpackException) as e:
                raise ProtocolError(f"handshake: malformed msgpack: {e}") from None
        key = self.conf.shared_key
        if not (isinstance(message, list) and len(message) == 6 and message[0] == "PING"):
            await self._pong(writer, False, "invalid ping message")
            raise ProtocolError("handshake: invalid ping message")
        _, hostname, salt, digest, username, pw_digest = message
        if digest != shared_key_digest(as_bytes(salt), str(hostname), nonce, key):
            await self._pong(writer, False, "shared_key mismatch")
            raise ProtocolError(f"handshake: shared_key mismatch (client says it is {quoted(hostname)})")
        if self.conf.users and not any(
                u.username == username and password_digest(auth, u.username, u.password) == pw_digest
                for u in self.conf.users):
            await self._pong(writer, False, "username/password mismatch")
            raise ProtocolError(f"handshake: username/password mismatch for {quoted(username)}")
        await self._pong(writer, True, "", shared_key_digest(as_bytes(salt), self.hostname, nonce, key))

    async def _pong(self, writer, ok: bool, reason: str, digest: str = "") -> None:
        writer.write(msgpack.packb(["PONG", ok, reason, self.hostname if ok else "", digest]))
        await writer.drain()

    async def stop(self) -> None:
        self._close()
        await self.connections.close_all()


class _Heartbeat(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(b"\x00", addr)


PLUGIN = ForwardSource
