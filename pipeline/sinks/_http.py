"""What the sinks that POST over HTTP share (http, prometheus_remote_write): their client
options, the headers those make, and what an answer means to the runner: written, retried
(RetryLater, waiting what Retry-After asks) or refused (DataError: the records are sought)."""

from __future__ import annotations

import base64
import http.client
from types import SimpleNamespace

from ..codecs.http import TLS_OPTIONS, Client, HTTPError, reason, retry_after, retryable
from ..codecs.quote import quoted
from ..config.options import Duration, MapOf, Option, Str
from ..plugin import DataError, RetryLater

CLIENT_OPTIONS = (
    Option("headers", MapOf(Str(numbers=True)), {}, "request headers, e.g. X-Scope-OrgID", secret=True),
    Option("bearer_token", Str(), None, "sent as `Authorization: Bearer TOKEN`", secret=True),
    Option("username", Str(), None, "basic auth user"),
    Option("password", Str(), None, "basic auth password", secret=True),
    Option("tls", TLS_OPTIONS, {}, "https: {ca, cert, key, verify}"),
    Option("timeout", Duration(min=0.001), 30.0, "connect and answer timeout of each request"),
)


def client_headers(conf: SimpleNamespace, headers: dict[str, str]) -> dict[str, str]:
    """`headers` with the auth CLIENT_OPTIONS ask for, then the configured `headers`."""
    out = dict(headers)
    if conf.bearer_token is not None:
        out["Authorization"] = f"Bearer {conf.bearer_token}"
    elif conf.username is not None:
        pair = f"{conf.username}:{conf.password or ''}".encode()
        out["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    out.update(conf.headers)
    return out


async def send(client: Client, method: str, target: str, headers: dict[str, str], body: bytes,
               where: str) -> None:
    """Return once a 2xx answers; else raise what the runner makes of the answer."""
    try:
        response = await client.request(method, target, headers, body)
    except (OSError, HTTPError, http.client.HTTPException) as e:  # no answer, or a garbled or oversized one
        raise ConnectionError(f"{where}: {reason(e)}") from None
    if 200 <= response.status < 300:
        return
    answer = response.body.strip()
    why = f"{where} answered HTTP {response.status}" + (f": {quoted(answer)}" if answer else "")
    if 400 <= response.status < 500 and not retryable(response.status):
        raise DataError(why)
    # a 3xx too: a redirect is not followed, and the records are not at fault
    raise RetryLater(why, retry_after(response.headers))
