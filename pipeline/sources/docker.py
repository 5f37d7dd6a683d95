"""Source `docker`: stats of running containers from the Docker Engine API."""

from __future__ import annotations

import asyncio
import http.client
from fnmatch import fnmatchcase
from typing import Any

from ..codecs.formats import DecodeError, json_loads
from ..codecs.http import MAX_BYTES_OPTION, Client, HTTPError, Response, check, reason
from ..config.addresses import URL
from ..config.options import Duration, ListOf, MapOf, Option, Str
from ..event import Batch, now_ns
from ..plugin import PollSource

#: API versions from which stats take one-shot=true (one sample, no 1 s wait for precpu)
ONE_SHOT_FROM = (1, 41)


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (0,)


class DockerSource(PollSource):
    """Poll the Docker Engine API: one event per running container with its stats.

    Each event is the `/containers/{id}/stats?stream=false` document (with `one-shot=true`
    where the API has it, so a poll does not wait 1-2 s per container) plus `container_id`,
    `container_name` (no leading slash), `image` and the labels named in `record_labels`.
    Containers are chosen by `containers` (names, ids or glob patterns) and `labels`; their
    stats are fetched concurrently. A container that stops between the list and its stats
    is skipped (counted as `vanished`). An unreachable socket, denied permission or API
    errors are logged when they start and when they end; the next poll goes on.
    Feed the events to `docker_metrics` for what `docker stats` shows.
    """

    options = (
        Option("endpoint", URL("unix", "tcp"), "unix:///var/run/docker.sock",
               "unix:///path.sock (or /path.sock) or tcp://host:port"),
        Option("containers", ListOf(Str()), ["*"], "names, ids or glob patterns of containers to watch"),
        Option("labels", MapOf(Str(numbers=True)), {}, "only containers with these labels (values may be globs)"),
        Option("record_labels", ListOf(Str()), [], "container labels copied into each event (as `labels`)"),
        Option("timeout", Duration(min=0.001), 10.0, "timeout of each API request"),
        Option("api_version", Str(), None, "API version to use (default: negotiated through /version)"),
        MAX_BYTES_OPTION,
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        endpoint = conf.endpoint
        base = "http://" + endpoint[len("tcp://"):] if endpoint.startswith("tcp://") else endpoint
        self.client = Client(base, conf.timeout, max_bytes=conf.max_bytes)
        self.prefix: str | None = f"/v{conf.api_version}" if conf.api_version else None
        self.one_shot = bool(conf.api_version) and _version(conf.api_version) >= ONE_SHOT_FROM

    async def _get(self, target: str) -> Response:
        return await self.client.request("GET", target, {"Accept": "application/json"})

    async def _negotiate(self) -> str:
        if self.prefix is None:
            body = check(await self._get("/version"), "/version")
            version = str(json_loads(body).get("ApiVersion") or "1.24")
            self.prefix = f"/v{version}"
            self.one_shot = _version(version) >= ONE_SHOT_FROM
            # debug: under in_exec, `run --once` negotiates on every call
            self.ctx.log.debug("Docker API version %s", version)
        return self.prefix

    def _selected(self, c: dict) -> bool:
        names = [n.lstrip("/") for n in c.get("Names") or ()]
        cid = c.get("Id", "")
        wanted = self.conf.containers
        if not any(fnmatchcase(n, p) for p in wanted for n in names) and \
                not any(cid.startswith(p) or fnmatchcase(cid, p) for p in wanted):
            return False
        labels = c.get("Labels") or {}
        return all(k in labels and fnmatchcase(str(labels[k]), v) for k, v in self.conf.labels.items())

    async def poll(self) -> Batch:
        endpoint = self.conf.endpoint
        try:
            prefix = await self._negotiate()
            listed = json_loads(check(await self._get(f"{prefix}/containers/json"), "/containers/json"))
        except (OSError, TimeoutError, HTTPError, http.client.HTTPException, DecodeError, AttributeError) as e:
            self.ctx.health("api", False, f"cannot list containers at {endpoint}: {reason(e)}")
            return []
        if not isinstance(listed, list):
            self.ctx.health("api", False, f"{endpoint}: /containers/json is not a list")
            return []
        self.ctx.health("api", True, f"Docker API at {endpoint} answers again")
        chosen = [c for c in listed if isinstance(c, dict) and self._selected(c)]
        self.ctx.forget("stats ", {f"stats {c.get('Id', '')}" for c in chosen})
        results = await asyncio.gather(*(self._stats(prefix, c) for c in chosen))
        return [e for e in results if e is not None]

    async def _stats(self, prefix: str, c: dict) -> Any:
        cid = c.get("Id", "")
        query = "stream=false&one-shot=true" if self.one_shot else "stream=false"
        started = now_ns()
        try:
            response = await self._get(f"{prefix}/containers/{cid}/stats?{query}")
            if response.status == 404:
                self.ctx.count("vanished")  # stopped or removed since the list: not an error
                return None
            doc = json_loads(check(response, f"stats of {cid[:12]}"))
        except (OSError, TimeoutError, HTTPError, http.client.HTTPException, DecodeError) as e:
            self.ctx.health(f"stats {cid}", False, f"cannot get stats of container {cid[:12]}: {reason(e)}")
            return None
        self.ctx.health(f"stats {cid}", True, f"stats of container {cid[:12]} readable again")
        if not isinstance(doc, dict):
            return None
        names = c.get("Names") or [doc.get("name") or ""]
        doc["container_id"] = cid
        doc["container_name"] = names[0].lstrip("/")
        doc["image"] = c.get("Image")
        if self.conf.record_labels:
            labels = c.get("Labels") or {}
            doc["labels"] = {k: labels[k] for k in self.conf.record_labels if k in labels}
        return self.event(doc, started)


PLUGIN = DockerSource
