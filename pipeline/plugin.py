"""The three plugin interfaces and the registry that finds them by type name.

A plugin module lives at `pipeline/<kind>s/<type>.py` and names its class in a
module-level `PLUGIN`. Modules are imported only when a config uses them, so a
`--once` run pays for what it runs and nothing else.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from .config.options import (
    Duration,
    Enum,
    Int,
    ListOf,
    OneOf,
    Option,
    Size,
    Str,
    Struct,
)
from .event import Batch, Event, Packed, Record, now_ns

if TYPE_CHECKING:
    from .config.fields import Check, Fields
    from .engine.ack import Ack
    from .engine.context import Context

KINDS = ("source", "filter", "sink")


class Plugin:
    """What every component shares: its options, its context and its life cycle."""

    kind: ClassVar[str]
    #: options every plugin of this kind takes (declared on the base classes)
    common_options: ClassVar[tuple[Option, ...]] = ()
    #: the plugin's own options
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, ctx: Context, conf: SimpleNamespace):
        self.ctx = ctx
        self.conf = conf

    @classmethod
    def all_options(cls) -> tuple[Option, ...]:
        own = {o.name for o in cls.options}
        return tuple(o for o in cls.common_options if o.name not in own) + cls.options

    @classmethod
    def fields(cls, conf: SimpleNamespace, upstream: Fields | None, check: Check) -> Fields | None:
        """The numeric fields of this component's records, told from its config and what its
        inputs' records carry (None: cannot be told); see pipeline/config/fields.py."""
        return None

    @classmethod
    def summary(cls) -> str:
        """The docstring's first paragraph on one line (a first sentence may wrap)."""
        return " ".join(inspect.cleandoc(cls.__doc__ or "").split("\n\n", 1)[0].split())

    async def start(self) -> None:
        """Open what the plugin needs (sockets, files). Called before any data flows."""

    async def stop(self) -> None:
        """Release what start() opened. Called once, after the last data."""

    def reopen(self) -> None:
        """Reopen the files the plugin keeps open, by path (SIGHUP: logrotate moved them)."""


_TYPE = Option("type", Str(), help="plugin type")


class Source(Plugin):
    kind = "source"
    common_options: ClassVar[tuple[Option, ...]] = (
        _TYPE,
        Option("tag", Str(), None, "tag of the events (default: the source's id)"),
    )

    def __init__(self, ctx: Context, conf: SimpleNamespace):
        super().__init__(ctx, conf)
        self.tag: str = conf.tag or ctx.id

    def event(self, record: Record, time_ns: int | None = None) -> Event:
        return (self.tag, time_ns if time_ns is not None else now_ns(), record)


class PollSource(Source):
    """A source the runtime calls every `interval`, aligned to the clock."""

    common_options = Source.common_options + (
        Option("interval", Duration(min=0), 10.0, "time between polls, aligned to the clock; 0 polls once"),
    )

    async def poll(self) -> Batch:
        raise NotImplementedError


class Emit(Protocol):
    async def __call__(self, batch: Batch, ack: Ack | None = None) -> None: ...

    async def packed(self, items: list[Packed], ack: Ack | None = None) -> None: ...


class StreamSource(Source):
    """A source that produces events as they come (stdin, tail, forward)."""

    async def run(self, emit: Emit) -> None:
        """Read until the end of input or until cancelled; `await emit(batch)` per batch
        (or `await emit.packed(items)` for Packed runs). Either returns once the events
        are in every buffer they go to; an `ack` given with them (pipeline/engine/ack.py) fires
        once they are delivered: written by every sink, or fsynced in its file buffer."""
        raise NotImplementedError


_INPUTS = Option("inputs", ListOf(Str(), one=True), help="ids of the sources and filters to read from (one id or a list)")
_MATCH = Option("match", OneOf(Str(), ListOf(Str())), None,
                "fluentd tag patterns (*, **, {a,b}); only matching events are taken")


class Filter(Plugin):
    """`process(batch) -> batch`, synchronous. Stateful filters also keep state."""

    kind = "filter"
    common_options = (_TYPE, _INPUTS, _MATCH)
    #: a filter with state to keep between `--once` runs sets this
    stateful: ClassVar[bool] = False
    #: seconds between calls of tick(), for filters that emit on time (windows); an
    #: instance may set its own (from its window's length)
    tick_interval: float | None = None

    def process(self, batch: Batch) -> Batch:
        raise NotImplementedError

    def tick(self, now: int) -> Batch:
        """Events that are due at `now` (ns), e.g. closed windows."""
        return []

    def flush(self) -> Batch:
        """Events still held at shutdown or at the end of a `--once` run."""
        return []

    def save_state(self) -> Any:
        return None

    def load_state(self, state: Any) -> None:
        pass


BUFFER = Struct(
    Option("type", Enum("memory", "file"), "memory", "memory, or file (survives crashes)"),
    Option("path", Str(), None, "directory of the file buffer's chunks"),
    Option("max_bytes", Size(), 64 * 1024 * 1024,
           "most bytes held before the overflow policy acts: memory for a memory buffer "
           "(events estimated at 5x their msgpack size), disk for a file buffer"),
    Option("overflow", Enum("block", "drop_oldest", "drop_newest"), "block",
           "when full: block (sources wait), drop_oldest or drop_newest"),
    name="buffer",
)


class OutputClosed(Exception):
    """Raised by a sink whose reader is gone for good (stdout into `head`): not retried,
    it stops the pipeline at once, exit status 141, as SIGPIPE ends `cat`."""


class DataError(Exception):
    """Raised by a sink for records it can never write, whatever the destination does (the
    other exceptions the runtime takes for such are in sink_runner.DATA_FAILURES). `items`
    names them, if the sink knows; the sink must raise before writing any of the batch:
    the runtime sends the bad records to `_errors` and writes the rest again, never
    retrying the bad ones."""

    def __init__(self, reason: str, items: list | None = None):
        super().__init__(reason)
        self.items = items


class RetryLater(ConnectionError):
    """Raised by a sink whose destination asked for a wait (HTTP 429 or 503 with Retry-After):
    retried as any destination failure, after `after` seconds (up to retry_max_interval)
    rather than the backoff's guess."""

    def __init__(self, reason: str, after: float | None = None):
        super().__init__(reason)
        self.after = after


class Sink(Plugin):
    """`write(batch)`, behind a buffer the runtime owns (batching, retry, overflow)."""

    kind = "sink"
    #: write() takes Packed runs as they are (else the runtime decodes them first)
    takes_packed: ClassVar[bool] = False
    #: chunks given to write() at once, each by its own writer (more than 1: order may change)
    max_in_flight: int = 1
    common_options = (
        _TYPE, _INPUTS, _MATCH,
        Option("buffer", BUFFER, {}, "buffer settings: {type, path, max_bytes, overflow}"),
        Option("flush_interval", Duration(min=0), 0.0,
               "0: write as soon as the sink is free (batches grow while it is busy); "
               "more: gather events this long first"),
        Option("chunk_max_events", Int(min=1), 10000, "most events per write"),
        Option("chunk_max_bytes", Size(), 8 * 1024 * 1024, "most bytes per write"),
        Option("retry_max_interval", Duration(min=0.001), 30.0, "longest wait between retries"),
        Option("retry_timeout", Duration(), None,
               "give a chunk up after this long (to the errors output); default: retry forever"),
    )

    async def write(self, batch: Batch) -> None:
        """Deliver the batch, or raise: a failure of the destination (OSError, a timeout) is
        retried with backoff; one of the data (DataError, or TypeError, ValueError,
        OverflowError, RecursionError while encoding) is narrowed down to the records that
        cause it, which go to `_errors`; OutputClosed stops the pipeline. `batch` holds
        Packed runs only for a sink that `takes_packed`."""
        raise NotImplementedError


_BASES = {"source": Source, "filter": Filter, "sink": Sink}


class UnknownPlugin(LookupError):
    pass


def load(kind: str, name: str) -> type[Plugin]:
    if not name.isidentifier() or name.startswith("_"):
        raise UnknownPlugin(name)
    try:
        module = importlib.import_module(f"pipeline.{kind}s.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"pipeline.{kind}s.{name}":
            raise UnknownPlugin(name) from None
        raise
    cls = getattr(module, "PLUGIN", None)
    if not (isinstance(cls, type) and issubclass(cls, _BASES[kind])):
        raise UnknownPlugin(name)
    return cls


def names(kind: str) -> list[str]:
    package = importlib.import_module(f"pipeline.{kind}s")
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))
