"""Source `http_json`: poll a URL that answers JSON (an app's /stats, Spring actuator, ...)."""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import urlsplit

from ..codecs.formats import DecodeError, json_loads
from ..codecs.http import MAX_BYTES_OPTION, TLS_OPTIONS, Client, HTTPError, check, reason
from ..config.addresses import URL
from ..config.options import Bool, Duration, Enum, MapOf, Option, Str
from ..event import Batch, get_path, now_ns
from ..plugin import PollSource


class HttpJsonSource(PollSource):
    """Poll a URL that returns JSON; one event per poll (or per element with `split`).

    What mackerel-plugin-json does, with rates downstream. `path: stats.vm` emits only that
    part of the document; `split: true` emits one event per element of an array (at `path`).
    A non-2xx answer, a body that is not JSON, or a server slower than `timeout` is logged
    once when it starts failing and once when it recovers, counted, and polled again.
    """

    options = (
        Option("url", URL("http", "https"), help="http:// or https:// URL"),
        Option("method", Enum("GET", "POST"), "GET", "request method"),
        Option("headers", MapOf(Str(numbers=True)), {}, "request headers, e.g. Authorization", secret=True),
        Option("body", Str(), None, "request body (POST)"),
        Option("timeout", Duration(min=0.001), 5.0, "connect and read timeout"),
        Option("tls", TLS_OPTIONS, {}, "https: {ca, cert, key, verify}"),
        Option("path", Str(), None, "dotted path to the part of the document to emit"),
        Option("split", Bool(), False, "emit one event per element of the array (at `path`)"),
        MAX_BYTES_OPTION,
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        url = urlsplit(conf.url)
        self.client = Client(f"{url.scheme}://{url.netloc}", conf.timeout, conf.tls, conf.max_bytes)
        self.target = url.path + (f"?{url.query}" if url.query else "") or "/"

    async def poll(self) -> Batch:
        started = now_ns()
        url = self.conf.url
        body = self.conf.body.encode() if self.conf.body is not None else None
        headers = {"Accept": "application/json", **self.conf.headers}
        try:
            response = await self.client.request(self.conf.method, self.target, headers, body)
            data = check(response)
            self.ctx.counters["bytes_in"] += len(data)
        except (OSError, TimeoutError, HTTPError, http.client.HTTPException, ssl.SSLError) as e:
            self.ctx.health("http", False, f"cannot get {url}: {reason(e)}")
            return []
        try:
            doc = json_loads(data)
        except DecodeError as e:
            message = f"{url} answered with something that is not JSON: {e}"
            self.ctx.health("http", False, message, count=False)
            self.ctx.error(message, origin=url, data=data, log=False)
            return []
        if self.conf.path:
            doc = get_path(doc, self.conf.path) if isinstance(doc, dict) else None
        items = doc if self.conf.split and isinstance(doc, list) else [doc]
        records = [i for i in items if isinstance(i, dict)]
        if len(records) != len(items):
            self.ctx.health("http", False, f"{url}: {self.conf.path or 'the document'} is not a JSON object"
                            + (" or a list of objects" if self.conf.split else ""))
            return []
        self.ctx.health("http", True, f"{url} answers again")
        return [self.event(r, started) for r in records]


PLUGIN = HttpJsonSource
