"""What `pipeline tap` and `pipeline top` use to ask a running pipeline's api."""

from __future__ import annotations

import http.client
from typing import Any

import orjson

from ..config.addresses import parse_listen


class ApiUnreachable(Exception):
    pass


class Client:
    def __init__(self, address: str, timeout: float = 5.0):
        self.host, self.port = parse_listen(address)
        self.address = f"{self.host}:{self.port}"
        self.timeout = timeout

    def open(self, path: str) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("GET", path)
            return conn.getresponse()
        except OSError as e:
            conn.close()
            raise ApiUnreachable(f"cannot reach the api at {self.address}: {e.strerror or e} "
                                 "(is `pipeline run` running with `api:` or --api?)") from None

    def get(self, path: str) -> tuple[int, Any]:
        response = self.open(path)
        try:
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise ApiUnreachable(f"{self.address}{path}: {e}") from None
        finally:
            response.close()
        return response.status, orjson.loads(body) if body else None
