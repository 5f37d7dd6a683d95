"""HTTP/1.1 requests for the polling sources (http_json, prometheus, docker).

Python's http.client does the protocol (chunked bodies, keep-alive, TLS); requests run in
worker threads so a slow server never stalls the event loop. It imports in a few
milliseconds, which matters to `run --once` under in_exec; the docker source reaches the
Engine API over its unix socket through the same client.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .options import Bool, Option, Str, Struct

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


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


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

    def __init__(self, base: str, timeout: float, tls: Any = None, max_bytes: int = 64 * 1024 * 1024):
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
                     body: bytes | None = None) -> Response:
        conn = self._connection()
        try:
            conn.request(method, target, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read(self.max_bytes + 1)
            if len(data) > self.max_bytes:
                raise HTTPError(f"response larger than {self.max_bytes} bytes")
            return Response(response.status, response.headers, data)
        finally:
            conn.close()

    async def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                      body: bytes | None = None) -> Response:
        return await asyncio.wait_for(
            asyncio.to_thread(self.request_sync, method, target, headers, body), self.timeout * 2)


def check(response: Response, what: str) -> bytes:
    if not 200 <= response.status < 300:
        start = response.body[:120].decode("utf-8", "replace").strip()
        raise HTTPError(f"{what}: HTTP {response.status}" + (f": {start}" if start else ""))
    return response.body


def reason(e: BaseException) -> str:
    """A short reason for a failed request, for one log line."""
    if isinstance(e, TimeoutError | socket.timeout):
        return "timed out"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
