"""What the runtime gives each component: its id, logger, counters, state file
and the way to report bad input without flooding the log."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from ..codecs.quote import quoted, safe_text, sample
from ..event import Event, now_ns
from ..metrics.histogram import Histogram

ERROR_TAG_PREFIX = "pipeline.error"
#: the same problem of one component is logged at most once in this many seconds
LOG_EVERY = 60.0


class RateLimitedLog:
    """At most one line per kind in LOG_EVERY seconds; the next line of that kind says how
    many were left out in between. Never a traceback: exc_info goes to a debug line only,
    so a peer that triggers a bug a thousand times a second costs one line a minute."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def __call__(self, level: int, kind: str, message: str, exc: BaseException | None = None) -> bool:
        """Log `message` unless `kind` was logged less than LOG_EVERY seconds ago;
        whether it was logged."""
        if exc is not None and self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("%s", message, exc_info=exc)
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < LOG_EVERY:
            self._held[kind] += 1
            return False
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        more = f" ({held} more since the last such line)" if held else \
            " (further ones this minute are counted, not logged)"
        self.log.log(level, "%s%s", message, more)
        return True


class Context:
    def __init__(self, id: str, kind: str, *, state_dir: Path | None = None, once: bool = False,
                 on_error: Callable[[Event], None] | None = None):
        self.id = id
        self.kind = kind
        self.log = logging.getLogger(f"pipeline.{kind}.{id}")
        self.counters: Counter[str] = Counter()
        #: errors by kind (error()'s kind, health()'s key): what the api reports per kind
        self.error_kinds: Counter[str] = Counter()
        #: figures that go up and down (open connections), set by the component; one with
        #: labels (figures.GAUGES) is a map of their values to its value (a partition's lag)
        self.gauges: dict[str, float | dict[tuple[str, ...], float]] = {}
        #: durations by name (poll, write), observed by the runtime
        self.timings: dict[str, Histogram] = {}
        #: the running pipeline's figures (pipeline/engine/figures.py Figures), for the
        #: internal_metrics source; set by the runtime
        self.figures: Any = None
        #: what the config tells of the fields of the records reaching the component (a
        #: filter's or sink's; pipeline/config/fields.py Fields), None if it cannot; set by the runtime
        self.input_fields: Any = None
        self.state_dir = state_dir
        self.once = once
        self._on_error = on_error
        self.limited = RateLimitedLog(self.log)
        self._states: dict[str, bool] = {}
        self.last_failure = ""

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def observe(self, name: str, seconds: float) -> None:
        timing = self.timings.get(name)
        if timing is None:
            timing = self.timings[name] = Histogram()
        timing.observe(seconds)

    def error(self, message: str, *, origin: str | None = None, data: Any = None,
              kind: str = "bad_input", log: bool = True, tag: str | None = None, n: int = 1,
              fields: dict[str, Any] | None = None) -> None:
        """Bad input: counted, logged at most once a minute per kind, sent to the errors output.
        `log=False` where health() has logged the failure already; `tag` of the bad event;
        `n` events it stands for (counted); `fields` go into the error record as they are (a
        parser's whole raw line, where `sample` is cut)."""
        self.count("errors", n)
        self.count(kind, n)
        self.error_kinds[kind] += n
        shown = sample(data) if data is not None else None
        message = safe_text(message)
        if log:
            where = f" from {origin}" if origin else ""
            more = f": {quoted(data)}" if data is not None else ""
            self.limited(logging.WARNING, kind, f"{message}{where}{more}")
        if self._on_error is not None:
            record = {"component": self.id, "error": message, "kind": kind}
            if origin:
                record["origin"] = safe_text(origin)
            if tag is not None:
                record["tag"] = safe_text(tag)
            if shown is not None:
                record["sample"] = shown
            if fields:
                record.update(fields)
            self._on_error((f"{ERROR_TAG_PREFIX}.{self.id}", now_ns(), record))

    def unexpected(self, what: str, e: BaseException, *, origin: str | None = None) -> None:
        """An exception nothing expected (a bug, or a resource gone): counted, one line per
        exception type a minute, its traceback only at log level debug."""
        self.count("unexpected_errors")
        where = f" from {origin}" if origin else ""
        self.limited(logging.ERROR, f"unexpected {what} {type(e).__name__}",
                     f"{what}{where}: {type(e).__name__}: {quoted(str(e))}", exc=e)

    def health(self, key: str, ok: bool, message: str = "", *, every_time: bool = False,
               count: bool = True) -> None:
        """Log only when `key` changes between ok and failing, so a server that is
        down for an hour gives two lines, not one per poll. Failures are counted
        (`count=False` where error() counts them). `every_time` logs each failure
        (a command that is missing, per attempt)."""
        before = self._states.get(key, True)
        self._states[key] = ok
        if not ok:
            self.last_failure = message
            if count:
                self.count("errors")
                self.error_kinds[key] += 1
            if before or every_time:
                self.log.error("%s", message)
        elif not before:
            # good news at info: a warning would page someone for a problem that is gone
            self.log.info("%s", message or f"{key}: recovered")

    def forget(self, prefix: str, keep: set[str]) -> None:
        """Drop the health of keys under `prefix` that are not in `keep` (a container that
        is gone): what no longer exists cannot be failing."""
        for key in [k for k in self._states if k.startswith(prefix) and k not in keep]:
            del self._states[key]

    def healthy(self, key: str) -> bool:
        """Whether `key` is not failing now (never reported counts as healthy)."""
        return self._states.get(key, True)

    @property
    def failing(self) -> bool:
        """Whether anything reported through health() is failing now."""
        return not all(self._states.values())

    # state kept between runs (rate counters): one msgpack file per component

    @property
    def state_path(self) -> Path | None:
        return self.state_dir / f"{self.id}.state" if self.state_dir else None

    def load_state(self) -> Any:
        path = self.state_path
        if path is None or not path.exists():
            return None
        try:
            return msgpack.unpackb(path.read_bytes(), strict_map_key=False)
        except Exception as e:  # a torn or foreign file must not stop the pipeline
            self.log.warning("ignoring unreadable state file %s: %s", path, e)
            return None

    def save_state(self, state: Any) -> None:
        path = self.state_path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        # write, fsync, rename: a kill at any moment leaves the old or the new file whole
        with open(tmp, "wb") as f:
            f.write(msgpack.packb(state))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
