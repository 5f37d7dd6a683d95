"""Sink `syslog`: RFC 5424 (or RFC 3164) messages to a syslog server over TCP (octet-counted),
TLS or UDP."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import ssl
import struct
import termios
from collections import deque
from typing import Any

from ..codecs.syslog import (
    FACILITIES,
    FACILITY_NUMBERS,
    SEVERITIES,
    SEVERITY_NUMBERS,
    Stamps,
    cut_utf8,
    header_field,
    message_text,
    structured_data,
)
from ..config.options import Duration, Enum, Int, Option, Size, Str
from ..event import Batch
from ..plugin import Sink
from .forward import TLS, client_tls

MAX_DATAGRAM = 65507  # an IPv4 UDP payload
_TAG_UNSAFE = str.maketrans("[]:", "___")
_TCP_INFO_STATE = 0  # the first byte of struct tcp_info
_ESTABLISHED, _CLOSE, _CLOSE_WAIT = 1, 7, 8  # linux/tcp_states.h; CLOSE_WAIT: the server closed, having read all


class _Connection:
    __slots__ = ("reader", "writer", "sock")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sock = writer.get_extra_info("socket")

    def state(self) -> int:
        """The TCP state, read without taking anything from the socket (an error or end of
        input the event loop has not read yet shows here already)."""
        if self.sock.fileno() < 0:  # the event loop read the error first, and closed it
            return _CLOSE if self.reader.exception() is not None else _CLOSE_WAIT
        return self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[_TCP_INFO_STATE]

    def unacked(self) -> int:
        """Bytes sent that the server's TCP has not acknowledged (SIOCOUTQ)."""
        return struct.unpack("i", fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]


class SyslogSink(Sink):
    """Send each event as a syslog message: RFC 5424 (`<PRI>1 TIME HOST APP PROCID MSGID [SD] MSG`,
    times in UTC with microseconds) or RFC 3164 (`<PRI>Mmm dd hh:mm:ss HOST APP[PID]: MSG`, local
    time), over TCP with RFC 6587 octet counting (or a line feed after each), TLS, or UDP.

    Each header part comes from a field of the record where it has one (`facility_key`,
    `severity_key`, ... named as the syslog source writes them, so a relay keeps them) and
    from the option of the same name where not; the message is the `message_key` field, or
    the whole record as JSON. A message past `max_message_bytes` is cut (counted).

    Over TCP nothing is lost across a restart of the server (at-least-once): a write counts
    as done only once the server's TCP has acknowledged every byte of it, with the connection
    still open; and when the server resets a connection (it closed with data unread), the
    writes of the last `resend_bytes` on it are sent again, ahead of the next one. After such
    a restart the server may hold some messages twice. Over UDP a message may be lost.
    """

    options = (
        Option("host", Str(), help="the server's address"),
        Option("port", Int(min=1, max=65535), None, "the server's port; default 514, 6514 with tls"),
        Option("mode", Enum("tcp", "udp"), "tcp", "tcp (TLS with tls:) or udp"),
        Option("format", Enum("rfc5424", "rfc3164"), "rfc5424", "message format"),
        Option("framing", Enum("octet_counted", "lf"), "octet_counted",
               "tcp: each message preceded by its length (RFC 6587), or followed by a line feed "
               "(line breaks inside it are then sent as #012, as rsyslog writes them)"),
        Option("tls", TLS, None, "tcp: TLS settings {ca, cert, key, verify, server_name}"),
        Option("facility", Enum(*FACILITIES), "user", "facility of a record without facility_key"),
        Option("severity", Enum(*SEVERITIES), "info", "severity of a record without severity_key"),
        Option("hostname", Str(), None, "HOSTNAME of a record without hostname_key; default: this host's name"),
        Option("app_name", Str(), None, "APP-NAME (RFC 3164: TAG) of a record without app_name_key; "
               "default: the event's tag"),
        Option("facility_key", Str(), "facility", "field with the facility, a name (local0) or number"),
        Option("severity_key", Str(), "severity", "field with the severity, a name (err, warning) or number"),
        Option("hostname_key", Str(), "host", "field with the HOSTNAME"),
        Option("app_name_key", Str(), "ident", "field with the APP-NAME"),
        Option("procid_key", Str(), "pid", "field with the PROCID"),
        Option("msgid_key", Str(), "msgid", "field with the MSGID (RFC 5424)"),
        Option("structured_data_key", Str(), "structured_data",
               "field with the STRUCTURED-DATA as {SD-ID: {name: value}} (RFC 5424)"),
        Option("message_key", Str(), "message", "field with the MSG; a record without it is sent as JSON"),
        Option("max_message_bytes", Size(), 8 * 1024, "a longer message is cut (rsyslog's default limit)"),
        Option("resend_bytes", Size(), 1024 * 1024,
               "tcp: what a server that reset the connection may not have read is sent again: "
               "the writes of the last this many bytes (always the last write)"),
        Option("connect_timeout", Duration(min=0.001), 5.0, "connect (and TLS handshake) timeout"),
        Option("write_timeout", Duration(min=0.001), 10.0,
               "tcp: a write not acknowledged by the server's TCP by then is sent again on a new connection"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.rfc5424 = conf.format == "rfc5424"
        self.port = conf.port or (6514 if conf.tls is not None else 514)
        self.tls = client_tls(conf.tls)
        self.hostname = conf.hostname or socket.gethostname()
        self.stamp = Stamps(self.rfc5424)
        self.conn: _Connection | None = None
        self.udp: socket.socket | None = None
        #: writes on the current connection the server may not have read yet, newest last
        self.recent: deque[bytes] = deque()
        #: what a reset connection left to send again on the next one
        self.resend: list[bytes] = []

    @classmethod
    def fields(cls, conf, upstream, check):
        if conf.mode == "udp" and conf.tls is not None:
            check.error("tls", "TLS is for mode tcp, not udp")
        return None

    async def write(self, batch: Batch) -> None:
        frames = self._encode(batch)
        try:
            if self.conf.mode == "udp":
                await self._send_udp(frames)
            else:
                await self._send_tcp(b"".join(frames))
        except ssl.SSLCertVerificationError as e:  # a ValueError too: not the records' fault
            raise ConnectionError(str(e)) from None

    def _encode(self, batch: Batch) -> list[bytes]:
        conf = self.conf
        fac_key, sev_key, host_key = conf.facility_key, conf.severity_key, conf.hostname_key
        app_key, pid_key, msgid_key, sd_key, msg_key = (conf.app_name_key, conf.procid_key, conf.msgid_key,
                                                        conf.structured_data_key, conf.message_key)
        facility, severity = FACILITY_NUMBERS[conf.facility], SEVERITY_NUMBERS[conf.severity]
        octets, stamp, udp = conf.framing == "octet_counted", self.stamp, conf.mode == "udp"
        # a datagram larger than UDP carries would fail its every retry
        limit = min(conf.max_message_bytes, MAX_DATAGRAM) if udp else conf.max_message_bytes
        frames = []
        for tag, t, record in batch:
            pri = (self._number(record, fac_key, FACILITY_NUMBERS, facility) * 8
                   + self._number(record, sev_key, SEVERITY_NUMBERS, severity))
            host = record.get(host_key) if host_key else None
            app = (record.get(app_key) if app_key else None) or conf.app_name or tag
            pid = record.get(pid_key) if pid_key else None
            message = message_text(record, msg_key)
            if self.rfc5424:
                line = (f"<{pri}>1 {stamp(t)} {header_field(host or self.hostname, 255)} {header_field(app, 48)} "
                        f"{header_field(pid, 128)} {header_field(record.get(msgid_key) if msgid_key else None, 32)} "
                        f"{structured_data(record.get(sd_key) if sd_key else None)} {message}")
            else:
                ident = header_field(app, 32).translate(_TAG_UNSAFE)  # a reader ends the TAG at these
                line = (f"<{pri}>{stamp(t)} {header_field(host or self.hostname, 255)} "
                        f"{ident}{f'[{header_field(pid, 128).translate(_TAG_UNSAFE)}]' if pid is not None else ''}: {message}")
            data = line.encode("utf-8", "replace")
            if len(data) > limit:
                data = cut_utf8(data, limit)
                self.ctx.count("truncated")
            if udp:
                frames.append(data)
            elif octets:
                frames.append(b"%d %s" % (len(data), data))
            else:
                frames.append(data.replace(b"\n", b"#012") + b"\n")
        return frames

    def _number(self, record: dict, key: str, numbers: dict[Any, int], default: int) -> int:
        value = record.get(key) if key else None
        if value is None:
            return default
        number = numbers.get(value) if type(value) in (str, int) else None
        if number is None:
            self.ctx.count("bad_header_values")
            self.ctx.limited(logging.WARNING, f"bad {key}", f"field {key!r} holds {value!r}, not a name or "
                             "number this sink knows: the default is sent")
            return default
        return number

    async def _send_udp(self, frames: list[bytes]) -> None:
        if self.udp is None:
            loop = asyncio.get_running_loop()
            family, kind, proto, _, address = (await loop.getaddrinfo(self.conf.host, self.port,
                                                                      type=socket.SOCK_DGRAM))[0]
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            sock.connect(address)
            self.udp = sock
        send = self.udp.send
        sent = 0
        try:
            for data in frames:
                while True:
                    try:
                        sent += send(data)
                        break
                    except BlockingIOError:  # the socket's send buffer is full: rare
                        await asyncio.sleep(0.001)
        except OSError:  # ECONNREFUSED: an ICMP answer to an earlier message; nobody listens
            self.udp.close()
            self.udp = None
            raise
        finally:
            self.ctx.counters["bytes_out"] += sent

    async def _send_tcp(self, blob: bytes) -> None:
        conn = self.conn
        if conn is not None and conn.state() != _ESTABLISHED:
            self._drop(conn, conn.state() == _CLOSE)
            conn = None
        if conn is None:
            conn = self.conn = await self._connect()
            if self.resend:
                self.ctx.log.info("sending again the last %d bytes the server may not have read before "
                                  "it reset the connection", sum(map(len, self.resend)))
                self.ctx.count("resent_bytes", sum(map(len, self.resend)))
                self.recent.extend(self.resend)
                conn.writer.write(b"".join(self.resend))
                self.resend = []
        try:
            conn.writer.write(blob)
            await asyncio.wait_for(self._acknowledged(conn), self.conf.write_timeout)
        except BaseException:
            self._drop(conn, True)  # this write is retried whole by the runtime
            raise
        self.ctx.counters["bytes_out"] += len(blob)
        self._remember(blob)

    async def _connect(self) -> _Connection:
        tls = self.conf.tls
        server_name = (tls.server_name or self.conf.host) if self.tls else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.conf.host, self.port, ssl=self.tls, server_hostname=server_name),
            self.conf.connect_timeout)
        writer.transport.set_write_buffer_limits(0)  # drain() waits for the kernel to take all
        return _Connection(reader, writer)

    async def _acknowledged(self, conn: _Connection) -> None:
        """Until the server's TCP has every byte written; ConnectionResetError if it reset the
        connection meanwhile (a close with data unread)."""
        await conn.writer.drain()
        delay = 0.0002
        while conn.unacked() and conn.state() == _ESTABLISHED:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        if conn.state() == _CLOSE:
            raise ConnectionResetError("the server reset the connection")

    def _remember(self, blob: bytes) -> None:
        recent = self.recent
        recent.append(blob)
        size = sum(map(len, recent))
        while len(recent) > 1 and size > self.conf.resend_bytes:
            size -= len(recent.popleft())

    def _drop(self, conn: _Connection, reset: bool) -> None:
        """Close a connection; after a reset, what the server may not have read is sent again
        on the next one (a server that closed cleanly had read all)."""
        if reset:
            self.resend = list(self.recent) + self.resend
        self.recent.clear()
        conn.writer.transport.abort()
        if self.conn is conn:
            self.conn = None

    async def stop(self) -> None:
        """What a server that reset the connection since the last write may not have read is
        sent again now: no later write would carry it."""
        if self.conn is not None and self.conn.state() == _CLOSE:
            self._drop(self.conn, True)
        if self.resend:
            owed = sum(map(len, self.resend))
            try:
                await self._send_tcp(b"")
            except (OSError, TimeoutError) as e:
                self.ctx.count("errors")
                self.ctx.log.error("%d bytes the server may not have read before it reset the connection "
                                   "could not be sent again at shutdown: %s", owed, e)
        if self.conn is not None:
            self.conn.writer.close()
            self.conn = None
        if self.udp is not None:
            self.udp.close()


PLUGIN = SyslogSink
