"""Source `http`: records POSTed as fluentd's in_http and Vector's http_server take them."""

from __future__ import annotations

import base64
import hmac
import logging
from typing import Any
from urllib.parse import parse_qs, unquote

from ..codecs import edge
from ..codecs.connections import MAX_CONNECTIONS, SERVER_TLS, USER, Connections, idle_timeout, server_tls
from ..codecs.http_bodies import BodyError, decode_body
from ..codecs.http_server import HttpServer, Reply, Request
from ..config.options import Duration, Enum, Int, ListOf, Option, Size, Str
from ..engine.ack import Ack
from ..event import Batch, now_ns
from ..plugin import Emit, StreamSource

#: a time field past this many seconds is no epoch time an EventTime holds
_MAX_SECONDS = 2 ** 32
_ABSENT: Any = object()


class HttpSource(StreamSource):
    """Listen for records over HTTP: `POST /TAG` (fluentd's in_http) with a JSON object or
    array, NDJSON (Vector's http_server), msgpack, or a `json=` / `msgpack=` form field.

    The path names the tag (`/app/web` is `app.web`; `/` the source's tag). A body is taken
    whole or not at all: 200 once its records are in every sink's buffer (`ack: delivery`:
    once every sink has written them), 400 with the reason when any part does not parse
    (counted and sent to `_errors`, nothing taken), 413 past `max_body_bytes` (inflated, if
    `Content-Encoding: gzip`), 401 without the token or user asked for, and 503 with
    `Retry-After` while a sink's buffer is full (its overflow is `block`), rather than
    holding the sender. Connections are kept alive, at most `max_connections`, and closed
    after `idle_timeout` of silence.
    """

    endless = True
    options = (
        Option("bind", Str(), "127.0.0.1", "address to listen on (0.0.0.0 for every interface)"),
        Option("port", Int(min=0, max=65535), 9880, "TCP port (fluentd in_http's)"),
        Option("format", Enum("auto", "json", "ndjson", "msgpack"), "auto",
               "body format; auto: by Content-Type (JSON or NDJSON, msgpack, a json=/msgpack= form)"),
        Option("max_body_bytes", Size(), 32 * 1024 * 1024, "largest body taken (inflated, if gzip): 413 past it"),
        Option("token", Str(), None, "require `Authorization: Bearer TOKEN`", secret=True),
        Option("users", ListOf(USER), [], "require basic auth as one of these {username, password}"),
        Option("tls", SERVER_TLS, None, "TLS settings: {cert, key, ca}"),
        Option("ack", Enum("buffer", "delivery"), "buffer",
               "when 200 is answered: once the records are in every sink's buffer, or once every "
               "sink has written them"),
        Option("time_key", Str(), "time",
               "a record's field holding its time (epoch seconds), taken out of it; null: none"),
        Option("remote_addr_key", Str(), None, "add the sender's address under this key (fluentd: REMOTE_ADDR)"),
        Option("retry_after", Duration(min=1), 1.0, "the Retry-After of a 503 (a full buffer)"),
        MAX_CONNECTIONS,
        idle_timeout(10.0),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.connections = Connections(ctx, conf.max_connections, conf.idle_timeout)
        self.server = HttpServer(ctx, self._request, self._refused, max_body=conf.max_body_bytes,
                                 connections=self.connections)
        self.credentials = [f"Bearer {conf.token}".encode()] if conf.token is not None else []
        self.credentials += [b"Basic " + base64.b64encode(f"{u.username}:{u.password}".encode()) for u in conf.users]
        self.retry_after = str(max(1, round(conf.retry_after)))
        self._emit: Emit | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        await self.server.serve(self.conf.bind, self.conf.port, server_tls(self.conf.tls))

    async def stop(self) -> None:
        await self.server.stop()

    async def _refused(self, status: int, why: str, origin: str, body: bytes) -> None:
        """Counted, logged once a minute, and sent to `_errors` now (an empty emit takes the
        error record along)."""
        self.ctx.error(f"request refused ({status}): {why}", origin=origin, data=body or None, kind=f"http_{status}")
        if self._emit is not None:
            await self._emit([])

    def _authorized(self, request: Request) -> bool:
        given = request.headers.get("authorization", "").encode("latin-1")
        # every credential compared, in constant time: how long it takes tells nothing
        return any([hmac.compare_digest(given, c) for c in self.credentials])

    async def _request(self, request: Request) -> Reply:
        assert self._emit is not None
        self.ctx.count("requests")
        if request.method not in ("POST", "PUT"):
            return Reply(405, "POST records here\n", {"Allow": "POST, PUT"})
        if self.credentials and not self._authorized(request):
            await self._refused(401, "no valid credentials", request.origin, b"")
            scheme = "Bearer" if self.conf.token is not None else 'Basic realm="pipeline"'
            return Reply(401, "credentials required\n", {"WWW-Authenticate": scheme})
        try:
            batch = self._events(request)
        except BodyError as e:
            await self._refused(400, str(e), request.origin, request.body)
            return Reply(400, f"{e}\n")
        full = self._emit.blocked_by(batch)
        if full is not None:
            self.ctx.count("http_503")
            self.ctx.limited(logging.WARNING, "http_503", f"answering 503: the buffer of sink {full} is full")
            return Reply(503, f"the buffer of sink {full} is full: try again later\n",
                         {"Retry-After": self.retry_after})
        if not batch:
            return Reply(200)
        delivered = Ack() if self.conf.ack == "delivery" else None
        await self._emit(batch, delivered)
        if delivered is not None:
            delivered.release()
            await delivered.wait()
        return Reply(200)

    def _events(self, request: Request) -> Batch:
        query = request.query
        body, content_type = request.body, request.headers.get("content-type", "").lower()
        if self.conf.format == "auto" and content_type.startswith("application/x-www-form-urlencoded") \
                or not body and ("json" in query or "msgpack" in query):
            query = {**query, **parse_qs(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1")}
            if "msgpack" in query:
                body, content_type = query["msgpack"][-1].encode("latin-1"), "application/msgpack"
            elif "json" in query:
                body, content_type = query["json"][-1].encode("latin-1"), "application/json"
            else:
                raise BodyError("a form needs a json= or msgpack= field")
        records, clean = decode_body(body, self.conf.format if self.conf.format != "auto" else content_type,
                                     self.conf.max_body_bytes)
        if not clean:
            records, refused = edge.checked(records)
            if refused:
                raise BodyError(f"record refused: {refused[0][1]}")
        return self._times(records, _tag(request.target, self.tag), self._query_time(query), request.origin)

    def _query_time(self, query: dict[str, list[str]]) -> int:
        values = query.get("time")
        if values:
            try:
                seconds = float(values[-1])
            except ValueError:
                raise BodyError(f"time= is not a number of seconds: {values[-1][:40]!r}") from None
            if 0 <= seconds < _MAX_SECONDS:
                return int(seconds * 1e9)
            raise BodyError(f"time= is out of range: {values[-1][:40]!r}")
        return now_ns()

    def _times(self, records: list[dict[str, Any]], tag: str, default: int, origin: str) -> Batch:
        key, address = self.conf.time_key, self.conf.remote_addr_key
        if address is not None:
            host = origin.rpartition(":")[0]
            for r in records:
                r[address] = host
        if key is None:
            return [(tag, default, r) for r in records]
        values = [r.pop(key, _ABSENT) for r in records]
        if set(map(type, values)) == {int} and 0 <= min(values) and max(values) < _MAX_SECONDS:
            return [(tag, v * 1_000_000_000, r) for v, r in zip(values, records)]  # the usual case, at C speed
        return [(tag, _time(r, key, v, default), r) for v, r in zip(values, records)]


def _time(record: dict[str, Any], key: str, value: Any, default: int) -> int:
    """`value`, taken out of the record's `key`, in ns; or `default` when it is no number of
    epoch seconds, and then it is put back."""
    if (type(value) is int or type(value) is float) and 0 <= value < _MAX_SECONDS:
        return int(value * 1_000_000_000)
    if value is not _ABSENT:
        record[key] = value
    return default


def _tag(target: str, default: str) -> str:
    """fluentd's rule, `/a/b` is `a.b`; each part %-decoded after the split, so that a `%2F`
    is part of a tag, as the http sink's `${tag}` sends one."""
    parts = [unquote(p) for p in target.split("?", 1)[0].split("/") if p]
    return ".".join(parts) if parts else default


PLUGIN = HttpSource
