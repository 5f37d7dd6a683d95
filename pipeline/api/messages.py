"""The api's requests and answers, apart from the server so that its pages (tap, dashboard)
and the server that routes to them do not import each other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..codecs.http_server import Request

__all__ = ["Request", "Response", "json_response"]


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    #: pieces sent chunked as they come (a tap); `body` is then unused
    stream: AsyncGenerator[bytes, None] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: called with the connection's writer before a stream is sent (a tap sizes its socket)
    on_socket: Callable[[asyncio.StreamWriter], None] | None = None


def json_response(doc: Any, status: int = 200) -> Response:
    # str() for what a config holds parsed (the aggregate filter's metrics): its text as written
    return Response(status, orjson.dumps(doc, default=str, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_INDENT_2))
