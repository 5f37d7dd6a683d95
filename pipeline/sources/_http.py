"""What the HTTP-polling sources share: options, one client session, and a GET
that reports a down or failing server as health, never as an exception."""

from __future__ import annotations

import ssl
from typing import Any

from ..options import Bool, Duration, Enum, MapOf, Option, Str
from ..plugin import PollSource

HTTP_OPTIONS = (
    Option("url", Str(), help="URL to poll (http:// or https://)"),
    Option("method", Enum("GET", "POST"), "GET", "HTTP method"),
    Option("headers", MapOf(Str()), {}, "extra request headers"),
    Option("timeout", Duration(min=0.001), 5.0, "give a request up after this long"),
    Option("tls_verify", Bool(), True, "check the server's certificate and name"),
    Option("ca_file", Str(), None, "PEM file of CAs to trust instead of the system's"),
)


class HttpPollSource(PollSource):
    """A PollSource that fetches `url` once per poll."""

    #: request headers the plugin always sends (e.g. Accept), below the user's `headers`
    default_headers: dict[str, str] = {}

    async def start(self) -> None:
        import aiohttp

        tls: Any = True
        if not self.conf.tls_verify:
            tls = False
        elif self.conf.ca_file:
            tls = ssl.create_default_context(cafile=self.conf.ca_file)
        self._aiohttp = aiohttp
        self._session = aiohttp.ClientSession(
            headers={**self.default_headers, **self.conf.headers},
            timeout=aiohttp.ClientTimeout(total=self.conf.timeout),
            connector=aiohttp.TCPConnector(ssl=tls),
        )

    async def stop(self) -> None:
        await self._session.close()

    async def fetch(self) -> tuple[bytes, str] | None:
        """(body, content type), or None after reporting why there is none."""
        url = self.conf.url
        try:
            async with self._session.request(self.conf.method, url) as resp:
                body = await resp.read()
                if not 200 <= resp.status < 300:
                    self.ctx.error(f"HTTP {resp.status} {resp.reason}", origin=url, data=body,
                                   kind="http_status")
                    self.ctx.health("http", True)
                    return None
                self.ctx.health("http", True, f"{url}: reachable again")
                return body, resp.headers.get("Content-Type", "")
        except TimeoutError:
            self.ctx.health("http", False, f"{url}: no answer within {self.conf.timeout:g}s")
        except (self._aiohttp.ClientError, OSError) as e:
            self.ctx.health("http", False, f"{url}: {e.__class__.__name__}: {e}")
        return None
