"""Source `syslog`: a syslog server over UDP, TCP (line feed or octet-counted framing), TLS, or a
unix socket as /dev/log."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import stat
import struct
from typing import Any

from ..codecs.connections import (
    BACKLOG,
    MAX_CONNECTIONS,
    READ_SIZE,
    SERVER_TLS,
    Connection,
    Connections,
    idle_timeout,
    server_tls,
)
from ..codecs.syslog import FACILITY_OF_PRI, SEVERITY_OF_PRI, FramingError, detect
from ..config.options import Enum, Int, Option, Size, Str
from ..event import Batch
from ..parsers import Format, build
from ..plugin import Emit, StreamSource

#: datagrams taken in one turn, as one batch: the rest wait in the socket's buffer meanwhile
DATAGRAMS_PER_BATCH = 5000
#: Linux's SO_RXQ_OVFL (asm-generic/socket.h), which Python does not name: each datagram comes
#: with the count of those the kernel dropped on this socket so far, its receive buffer full
SO_RXQ_OVFL = 40
_DROPS = struct.Struct("=I")


class SyslogSource(StreamSource):
    """Receive syslog messages: over UDP, TCP (with or without TLS) or a unix socket (a
    datagram one as /dev/log, or a stream one), each parsed by the `syslog` parser (RFC 3164
    and RFC 5424, told apart per message) or the `format` given.

    On TCP the framing is told per connection from its first byte (RFC 6587): a digit starts
    octet counting (`LEN SP MSG`, what rsyslog's omfwd sends with TCP_Framing="octet-counted";
    a message may then hold line breaks), else every message ends with a line feed. A record
    with a PRI gets its `facility` and `severity` by name (`local0`, `err`); with
    `source_address_key`, the sender's address (`host:port`) too. A message past
    `max_message_bytes` is an error and skipped, as is a line that does not parse (see the
    parser's `on_error`); the rest flows. TCP connections are bounded as the forward source's
    are (`max_connections`, `idle_timeout`); a TCP sender waits while the buffers are full,
    a UDP one's messages wait in the socket's receive buffer, where the kernel drops what
    does not fit (`receive_buffer_bytes`).
    """

    endless = True
    options = (
        Option("mode", Enum("udp", "tcp", "unix_datagram", "unix_stream"), "udp",
               "udp, tcp (TLS with tls:), unix_datagram (as /dev/log) or unix_stream"),
        Option("bind", Str(), "127.0.0.1", "udp, tcp: address to listen on (0.0.0.0 for every interface)"),
        Option("port", Int(min=0, max=65535), 5140, "udp, tcp: port (514 needs privileges)"),
        Option("path", Str(), None, "unix modes: the socket's path; a stale socket file there is replaced"),
        Option("permissions", Str(), "0666", "unix modes: the socket file's mode (0666: any user may log)"),
        Option("format", Format(), "syslog", "the parser of each message: syslog (RFC 3164 and 5424), "
               "or a name or a map ({type: syslog, message_format: rfc5424, timezone: UTC})"),
        Option("max_message_bytes", Size(), 64 * 1024, "a longer message is an error, skipped"),
        Option("source_address_key", Str(), None, "put the sender's address (host:port) in this field"),
        Option("tls", SERVER_TLS, None, "tcp: TLS settings {cert, key, ca}"),
        Option("receive_buffer_bytes", Size(), 4 * 1024 * 1024,
               "udp, unix_datagram: the socket's receive buffer (SO_RCVBUF, at most the kernel's "
               "net.core.rmem_max), where datagrams wait while the pipeline is busy"),
        MAX_CONNECTIONS,
        idle_timeout(300.0),
    )

    @classmethod
    def fields(cls, conf, upstream, check):
        unix = conf.mode.startswith("unix")
        if unix and not conf.path:
            check.error("path", f"mode {conf.mode} needs path: (the socket file, e.g. /dev/log)")
        if conf.tls is not None and conf.mode != "tcp":
            check.error("tls", f"TLS is for mode tcp, not {conf.mode}")
        if conf.permissions and not (len(conf.permissions) <= 4 and set(conf.permissions) <= set("01234567")):
            check.error("permissions", f"expected an octal mode like 0666, got {conf.permissions!r}")
        return None

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.parser = build(conf.format, ctx)
        self.connections = Connections(ctx, conf.max_connections, conf.idle_timeout)
        self.server: asyncio.Server | None = None
        self.port: int = conf.port
        self._buf = bytearray()
        self._drops = 0

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        mode = self.conf.mode
        if mode in ("udp", "unix_datagram"):
            await self._datagrams(self._datagram_socket())
            return
        self.connections.fit_fd_limit()
        if mode == "tcp":
            self.server = await asyncio.start_server(self._connection, self.conf.bind, self.conf.port,
                                                     ssl=server_tls(self.conf.tls), limit=READ_SIZE,
                                                     backlog=BACKLOG)
            self.port = self.server.sockets[0].getsockname()[1]
            self.ctx.log.info("listening on %s:%d (tcp%s)", self.conf.bind, self.port,
                              ", TLS" if self.conf.tls else "")
        else:
            self.server = await asyncio.start_unix_server(self._connection, sock=self._unix_socket(socket.SOCK_STREAM),
                                                          limit=READ_SIZE, backlog=BACKLOG)
            self.ctx.log.info("listening on %s (unix stream)", self.conf.path)
        try:
            await self.connections.serve(self.server)
        finally:
            self._unlink()

    def _datagram_socket(self) -> socket.socket:
        if self.conf.mode == "unix_datagram":
            sock = self._unix_socket(socket.SOCK_DGRAM)
        else:
            family = socket.AF_INET6 if ":" in self.conf.bind else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((self.conf.bind, self.conf.port))
            self.port = sock.getsockname()[1]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.conf.receive_buffer_bytes)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        except OSError:  # not Linux: drops are not seen
            pass
        sock.setblocking(False)
        where = self.conf.path if self.conf.mode == "unix_datagram" else f"{self.conf.bind}:{self.port}"
        self.ctx.log.info("listening on %s (%s)", where, self.conf.mode.replace("_", " "))
        return sock

    def _unix_socket(self, kind: int) -> socket.socket:
        """Bound at `path`; a socket file nobody listens on any more (a crash) is replaced, a
        live one (journald's /dev/log) is not."""
        path = self.conf.path
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                with socket.socket(socket.AF_UNIX, kind) as probe:
                    try:
                        probe.connect(path)
                    except ConnectionRefusedError:  # nobody there: the file is stale
                        os.unlink(path)
                    except OSError as e:  # a socket of the other kind (EPROTOTYPE): may be live
                        raise OSError(e.errno, f"{path}: a socket file that may be in use ({e.strerror})") from None
                    else:
                        raise OSError(errno.EADDRINUSE, f"{path}: another program listens on it")
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, kind)
        sock.bind(path)
        os.chmod(path, int(self.conf.permissions, 8))
        return sock

    def _unlink(self) -> None:
        if self.conf.mode.startswith("unix"):
            try:
                os.unlink(self.conf.path)
            except OSError:
                pass

    async def _datagrams(self, sock: socket.socket) -> None:
        """One message a datagram; what has come by the time the loop looks is one batch."""
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(sock.fileno(), ready.set)
        try:
            while True:
                await ready.wait()
                ready.clear()
                while True:
                    taken, batch = self._take(sock)
                    if batch:
                        await self._emit(batch)
                    if taken < DATAGRAMS_PER_BATCH:
                        break  # none left: wait to be woken
        finally:
            loop.remove_reader(sock.fileno())
            sock.close()
            self._unlink()

    def _take(self, sock: socket.socket) -> tuple[int, Batch]:
        """The datagrams waiting, up to DATAGRAMS_PER_BATCH: how many, and their events."""
        limit = self.conf.max_message_bytes
        if len(self._buf) != limit + 1:  # one byte more: a longer datagram is seen cut, not taken cut
            self._buf = bytearray(limit + 1)
        buf, view, recv, ancillary = self._buf, memoryview(self._buf), sock.recvmsg_into, socket.CMSG_SPACE(4)
        unix, path = self.conf.mode == "unix_datagram", self.conf.path
        by_sender: dict[Any, list[str]] = {}
        size = taken = 0
        drops = None
        while taken < DATAGRAMS_PER_BATCH:
            try:
                n, cmsgs, _, sender = recv((buf,), ancillary)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # an ICMP error for something sent from this port: no data
                self.ctx.count("receive_errors")
                self.ctx.log.debug("receive: %s", e)
                continue
            taken += 1
            size += n
            if cmsgs:
                drops = cmsgs[0][2]
            if n > limit:
                self.ctx.error(f"datagram larger than max_message_bytes ({limit}), skipped",
                               origin=_origin(sender, unix, path), data=bytes(view[:256]), kind="too_large")
                continue
            text = str(view[:n], "utf-8", "replace")
            group = by_sender.get(sender)
            if group is None:
                group = by_sender[sender] = []
            group.append(text[:-1] if text.endswith("\n") else text)
        self.ctx.counters["bytes_in"] += size
        if drops is not None:
            self._dropped(_DROPS.unpack(drops)[0])
        batch: Batch = []
        for sender, texts in by_sender.items():
            batch += self._events(texts, _origin(sender, unix, path))
        return taken, batch

    def _dropped(self, total: int) -> None:
        """The kernel's count of datagrams it dropped on the socket: what is new is told."""
        new = (total - self._drops) & 0xFFFFFFFF
        self._drops = total
        if new:
            self.ctx.count("errors", new)
            self.ctx.count("datagrams_dropped", new)
            self.ctx.error_kinds["datagrams_dropped"] += new
            self.ctx.limited(logging.WARNING, "datagrams_dropped",
                             f"the kernel dropped {new} datagrams, the socket's receive buffer full: the "
                             "pipeline is slower than the senders (receive_buffer_bytes may help)")

    def _events(self, texts: list[str], origin: str) -> Batch:
        batch = self.parser.parse_lines(texts, self.tag, origin)
        facility, severity = FACILITY_OF_PRI, SEVERITY_OF_PRI
        key = self.conf.source_address_key
        for _, _, record in batch:
            pri = record.get("pri")
            if type(pri) is int and pri < 192:
                record["facility"] = facility[pri]
                record["severity"] = severity[pri]
            if key:
                record[key] = origin
        return batch

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.connections.handle(reader, writer, self._stream, (FramingError,))
        await self._emit([])  # the error records of a connection closed on bad input

    async def _stream(self, conn: Connection) -> None:
        data = await conn.read()
        if not data:
            return
        frames = detect(data, self.conf.max_message_bytes)
        origin = conn.origin if conn.origin != "unix socket" else self.conf.path
        while True:
            self.ctx.counters["bytes_in"] += len(data)
            texts, problems = frames.feed(data) if data else frames.finish()
            for message, sample in problems:
                self.ctx.error(message, origin=origin, data=sample, kind="too_large")
            if texts:
                await self._emit(self._events(texts, origin))
            if frames.broken:
                raise FramingError(frames.broken)
            if not data:
                return
            data = await conn.read()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        await self.connections.close_all()


def _origin(sender: Any, unix: bool, path: str) -> str:
    if unix:
        return sender or path  # a sender that bound no name of its own (logger, syslog(3))
    return f"{sender[0]}:{sender[1]}"


PLUGIN = SyslogSource
