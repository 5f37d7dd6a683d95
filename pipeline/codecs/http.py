"""HTTP/1.1 requests for the polling sources (http_json, prometheus, docker, uwsgi).

Python's http.client does the protocol (chunked bodies, keep-alive, TLS); requests run in
worker threads so a slow server never stalls the event loop. It imports in a few
milliseconds, which matters to `run --once` under in_exec; the docker source reaches the
Engine API over its unix socket through the same client.

A body is read in blocks and given up past `max_bytes` (a gzip body: past that many bytes
inflated, inflated as it comes), so a server answering too much costs at most that much
memory: read whole, a 50 MB answer took 572 MB once parsed.
"""

from __future__ import annotations

import asyncio
import email.utils
import http.client
import socket
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..config.options import Bool, Option, Size, Str, Struct
from .formats import MAX_DOCUMENT_BYTES
from .quote import quoted

MAX_BYTES_OPTION = Option("max_bytes", Size(), MAX_DOCUMENT_BYTES,
                          "fail the poll, parsing nothing, when an answer is larger than this "
                          "(inflated, if gzip); default 16MiB")
#: bytes read from the socket at a time
BLOCK = 64 * 1024

TLS_OPTIONS = Struct(
    Option("ca", Str(), None, "CA file to verify the server (default: the system's)"),
    Option("cert", Str(), None, "client certificate file"),
    Option("key", Str(), None, "client key file"),
    Option("verify", Bool(), True, "verify the server's certificate and name"),
    name="tls",
)


def tls_context(conf: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=getattr(conf, "ca", None))
    if conf is not None and not conf.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if conf is not None and conf.cert:
        ctx.load_cert_chain(conf.cert, conf.key)
    return ctx


class HTTPError(Exception):
    """A status outside 2xx, with the start of the body for the log."""


class TooLarge(HTTPError):
    """An answer past max_bytes: not read further, not parsed."""


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class _Abort:
    """Called from the event loop when a request's time is up (or its poll is cancelled):
    the worker thread reading the answer stops at once. A socket timeout alone did not:
    it bounds each read, and a server sending a byte every few seconds kept a thread
    reading for ever, which starved the other threads and kept SIGTERM from ending us."""

    def __init__(self) -> None:
        self.conn: http.client.HTTPConnection | None = None
        self.done = False

    def __call__(self) -> None:
        self.done = True  # set before looking at the socket; the thread looks after setting it
        sock = self.conn.sock if self.conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in recv()
            except OSError:
                pass

    def check(self) -> None:
        if self.done:
            raise TimeoutError("timed out")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Client:
    """One server: `http://host:port`, `https://...`, or `unix:///path.sock` (path in the
    request target); a new connection per request."""

    def __init__(self, base: str, timeout: float, tls: Any = None, max_bytes: int = MAX_DOCUMENT_BYTES):
        self.base = urlsplit(base)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.tls = tls_context(tls) if self.base.scheme == "https" else None

    def _connection(self) -> http.client.HTTPConnection:
        b = self.base
        if b.scheme == "unix":
            return UnixHTTPConnection(b.path, self.timeout)
        if b.scheme == "https":
            return http.client.HTTPSConnection(b.hostname or "", b.port, timeout=self.timeout, context=self.tls)
        return http.client.HTTPConnection(b.hostname or "", b.port, timeout=self.timeout)

    def request_sync(self, method: str, target: str, headers: dict[str, str] | None = None,
                     body: bytes | None = None, abort: _Abort | None = None) -> Response:
        abort = abort or _Abort()
        conn = abort.conn = self._connection()
        try:
            conn.connect()
            abort.check()
            conn.request(method, target, body=body, headers=headers or {})
            response = conn.getresponse()
            return Response(response.status, response.headers, self._body(response, abort))
        finally:
            conn.close()

    def _body(self, response: http.client.HTTPResponse, abort: _Abort) -> bytes:
        limit = self.max_bytes
        too_large = TooLarge(f"answer larger than max_bytes ({limit} bytes), not parsed")
        gzipped = (response.getheader("Content-Encoding") or "").strip().lower() == "gzip"
        if not gzipped and response.length is not None and response.length > limit:
            raise too_large
        inflate = zlib.decompressobj(wbits=31) if gzipped else None
        parts: list[bytes] = []
        size = 0
        # read1: one recv() a block, so that an abort is seen between any two
        while block := response.read1(BLOCK):
            abort.check()
            if inflate is not None:
                try:
                    block = inflate.decompress(block, limit + 1 - size)
                except zlib.error as e:
                    raise HTTPError(f"bad gzip answer: {e}") from None
                if inflate.unconsumed_tail:  # output stopped at the bound, input left
                    raise too_large
            size += len(block)
            if size > limit:
                raise too_large
            parts.append(block)
        if inflate is not None and not inflate.eof:
            raise HTTPError("gzip answer cut short")
        return b"".join(parts)

    async def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                      body: bytes | None = None) -> Response:
        abort = _Abort()
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self.request_sync, method, target, headers, body, abort), self.timeout * 2)
        finally:
            abort()  # done, timed out or cancelled: whatever the thread still reads is not wanted


def check(response: Response, what: str = "") -> bytes:
    """The body of a 2xx answer; `what` names the request where the log line does not."""
    if not 200 <= response.status < 300:
        start = response.body.strip()
        raise HTTPError((f"{what}: " if what else "") + f"HTTP {response.status}"
                        + (f": {quoted(start)}" if start else ""))
    return response.body


#: 4xx answers about the request's destination, not its data (no or a wrong token, a wrong
#: path, a receiver not yet enabled, too many requests): the same data may be taken once
#: the server or its config is put right, so they are retried, as 5xx are
RETRY_4XX = frozenset((401, 403, 404, 405, 407, 408, 425, 429))


def retryable(status: int) -> bool:
    return status >= 500 or status in RETRY_4XX


def retry_after(headers: http.client.HTTPMessage) -> float | None:
    """Seconds to wait that a Retry-After header asks for (delay-seconds or an HTTP date)."""
    value = (headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def reason(e: BaseException) -> str:
    """A short reason for a failed request, for one log line."""
    if isinstance(e, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(e, http.client.BadStatusLine) and not isinstance(e, http.client.RemoteDisconnected):
        return f"not an HTTP answer: {quoted(e.args[0])}"  # what the peer sent instead
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
