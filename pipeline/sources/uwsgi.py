"""Source `uwsgi`: the uWSGI stats server, over a unix socket, TCP or HTTP."""

from __future__ import annotations

import asyncio
import http.client
from urllib.parse import urlsplit

from ..codecs.formats import DecodeError, json_loads
from ..codecs.http import BLOCK, MAX_BYTES_OPTION, Client, HTTPError, TooLarge, check, reason
from ..config.addresses import URL
from ..config.fields import LIST, fields_of
from ..config.options import Duration, ListOf, Option, Str
from ..event import Batch, now_ns
from ..plugin import PollSource

#: parts of the stats document that `include` can leave out (`cores` sits in each worker)
PARTS = ("workers", "cores", "sockets", "locks", "metrics", "apps")
_IN_WORKERS = ("cores", "apps")
#: the numeric fields of a stats document (uWSGI 2.0), by the part that holds them
_NUMBERS = {
    "": ("listen_queue", "listen_queue_errors", "signal_queue", "load", "pid", "uid", "gid"),
    "workers": ("id", "pid", "accepting", "requests", "delta_requests", "exceptions", "harakiri_count",
                "signals", "signal_queue", "rss", "vsz", "running_time", "last_spawn", "respawn_count",
                "tx", "avg_rt"),
    "cores": ("id", "requests", "static_requests", "routed_requests", "offloaded_requests",
              "write_errors", "read_errors", "in_request"),
    "apps": ("id", "modifier1", "startup_time", "requests", "exceptions"),
    "sockets": ("queue", "max_queue", "shared", "can_offload"),
    "locks": ("*",),
    "metrics": ("value",),
}
#: where each part sits in the document
_AT = {"": (), "workers": ("workers", LIST), "cores": ("workers", LIST, "cores", LIST),
       "apps": ("workers", LIST, "apps", LIST), "sockets": ("sockets", LIST), "locks": ("locks", LIST),
       "metrics": ("metrics", "*")}


class UwsgiSource(PollSource):
    """Poll a uWSGI stats server; one event per poll: the stats document as uWSGI sent it.

    `address` is `unix:///path/stats.sock` (or just `/path/stats.sock`) or `tcp://host:port`
    (uWSGI's `stats` option: it writes the JSON and closes) or `http://host:port/`
    (`stats-http`). The document is parsed as it comes: big integers stay exact, and raw
    request-header bytes that uWSGI copies into `cores[].vars` (invalid UTF-8, control
    characters) do not break it.
    A server that is down, refuses, or sends half a document or garbage gives one log line
    when it starts failing and one when it recovers; every failed poll is counted.
    """

    options = (
        Option("address", URL("unix", "tcp", "http"),
               help="unix:///path/stats.sock (or /path/stats.sock), tcp://host:port or http://host:port/"),
        Option("timeout", Duration(min=0.001), 5.0, "connect and read timeout"),
        Option("include", ListOf(Str()), ["workers", "cores", "sockets", "metrics", "apps"],
               f"heavy parts to keep, of: {', '.join(PARTS)}; scalars are always kept"),
        MAX_BYTES_OPTION,
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        url = urlsplit(conf.address)
        self.scheme = url.scheme
        self.url = url
        self.drop = [p for p in PARTS if p not in conf.include]
        self.client = Client(f"http://{url.netloc}", conf.timeout, max_bytes=conf.max_bytes)

    @classmethod
    def fields(cls, conf, upstream, check):
        parts = [""] + [p for p in PARTS if p in conf.include and (p not in _IN_WORKERS or "workers" in conf.include)]
        return fields_of(_AT[part] + (name,) for part in parts for name in _NUMBERS[part])

    async def _read(self) -> bytes:
        if self.scheme == "http":
            return check(await self.client.request("GET", self.url.path or "/"))
        if self.scheme == "unix":
            reader, writer = await asyncio.open_unix_connection(self.url.path)
        else:
            reader, writer = await asyncio.open_connection(self.url.hostname, self.url.port)
        try:
            chunks: list[bytes] = []
            size = 0
            while data := await reader.read(BLOCK):
                size += len(data)
                if size > self.conf.max_bytes:
                    raise TooLarge(f"stats larger than max_bytes ({self.conf.max_bytes} bytes), not parsed")
                chunks.append(data)
            return b"".join(chunks)
        finally:
            writer.close()

    async def poll(self) -> Batch:
        started = now_ns()
        where = self.conf.address
        try:
            data = await asyncio.wait_for(self._read(), self.conf.timeout)
            self.ctx.counters["bytes_in"] += len(data)
        except (OSError, TimeoutError, HTTPError, http.client.HTTPException) as e:
            self.ctx.health("stats", False, f"cannot read uWSGI stats from {where}: {reason(e)}")
            return []
        try:
            doc = json_loads(data)
            if not isinstance(doc, dict):
                raise DecodeError(f"expected a JSON object, got {type(doc).__name__}")
        except DecodeError as e:
            message = f"bad uWSGI stats from {where} ({len(data)} bytes): {e}"
            self.ctx.health("stats", False, message, count=False)
            self.ctx.error(message, origin=where, data=data, log=False)
            return []
        self.ctx.health("stats", True, f"uWSGI stats from {where} readable again")
        return [self.event(self._trim(doc), started)]

    def _trim(self, doc: dict) -> dict:
        for part in self.drop:
            if part in _IN_WORKERS:
                for worker in doc.get("workers") or ():
                    if isinstance(worker, dict):
                        worker.pop(part, None)
            else:
                doc.pop(part, None)
        return doc


PLUGIN = UwsgiSource
