"""`pipeline check|run|plugins`: the command line.

Logs go to stderr only: stdout belongs to the stdout sink, which td-agent's
in_exec and mackerel-agent read.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time

from .. import __version__
from ..config.addresses import API_ADDRESS

EXIT_CONFIG = 2


class _Formatter(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]

    def format(self, record: logging.LogRecord) -> str:
        name = record.name.removeprefix("pipeline.")
        stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        text = f"{stamp}Z {record.levelname.lower()} {name}: {record.getMessage()}"
        if record.exc_info and logging.getLogger("pipeline").isEnabledFor(logging.DEBUG):
            text += "\n" + self.formatException(record.exc_info)
        return text


#: what every LogRecord has; anything else on one was passed as `extra` fields
_RECORD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_COMPONENT_KINDS = ("source", "filter", "sink")


class _JSONFormatter(logging.Formatter):
    """One JSON object a line, for shipping the pipeline's own logs: time, level, component
    (a component's id, with its kind; else the part of the pipeline: runtime, api, config),
    message, and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        import orjson

        name = record.name.removeprefix("pipeline.")
        kind, _, cid = name.partition(".")
        doc: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
        }
        if kind in _COMPONENT_KINDS and cid:
            doc.update(component=cid, kind=kind)
        else:
            doc["component"] = name
        doc["message"] = record.getMessage()
        doc.update({k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS})
        if record.exc_info and logging.getLogger("pipeline").isEnabledFor(logging.DEBUG):
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def _setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JSONFormatter() if fmt == "json" else _Formatter())
    root = logging.getLogger("pipeline")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _load(path: str):
    from ..config.graph import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as e:
        for line in e.errors.lines():
            print(line, file=sys.stderr)
        n = len(e.errors.items)
        print(f"{path}: {n} problem{'s' if n != 1 else ''}, nothing started", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    from ..config.graph import describe

    graph = _load(args.config)
    if graph is None:
        return EXIT_CONFIG
    for line in graph.warnings:
        print(line, file=sys.stderr)
    print(f"{args.config}: ok")
    print(describe(graph))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    graph = _load(args.config)
    if graph is None:
        return EXIT_CONFIG
    _setup_logging(args.log_level or graph.settings.log_level, args.log_format or graph.settings.log_format)
    if args.api is not None:
        from types import SimpleNamespace

        settings = graph.settings.api or SimpleNamespace(unhealthy_after=60.0)
        graph.settings.api = SimpleNamespace(**{**vars(settings), "address": args.api})
    for line in graph.warnings:
        # the log line says its level already
        logging.getLogger("pipeline.config").warning("%s", line.replace(": warning: ", ": ", 1))
    if os.environ.get("MACKEREL_AGENT_PLUGIN_META") == "1":
        from ..sinks.stdout import plugin_meta

        # mackerel-agent asks once, at its start: the answer comes from the config alone,
        # so it neither polls (a source that is down must not empty it) nor touches state
        meta = plugin_meta(graph)
        if meta is not None:
            sys.stdout.buffer.write(meta)
            sys.stdout.buffer.flush()
            return 0
    from ..engine.runtime import EXIT_OUTPUT_CLOSED, Runtime

    kinds = [graph.of_kind(k) for k in ("source", "filter", "sink")]
    # the daemon says what it runs; a --once run (every minute under in_exec) only at debug
    logging.getLogger("pipeline.runtime").log(
        logging.DEBUG if args.once else logging.INFO, "pipeline %s: %s %s: %d sources, %d filters, %d sinks (%s)", __version__,
        "running once" if args.once else "running", graph.file, *map(len, kinds),
        ", ".join(f"{c.id}:{c.conf.type}" for comps in kinds for c in comps))

    async def main() -> int:
        runtime = Runtime(graph, once=args.once)
        api = graph.settings.api
        if api is not None:
            # the engine knows no api: it hands the api its read-only figures, here
            from ..api.server import start_api

            runtime.services.append(lambda figures: start_api(figures, api))
        return await runtime.run()

    try:
        status = asyncio.run(main())
    except KeyboardInterrupt:
        return 130
    if status == EXIT_OUTPUT_CLOSED:
        _discard_stdout()  # what is still buffered for the reader that left
    return status


def _tapped_lines(line: bytes) -> bytes:
    """The api sends a batch a line, to keep its side cheap; a reader wants an event a line."""
    import orjson

    from ..codecs.encode import format_time

    piece = orjson.loads(line)
    component = piece["component"]
    return b"".join(orjson.dumps({"component": component, "tag": tag, "time": format_time(t, "iso8601"),
                                  "record": record}, option=orjson.OPT_APPEND_NEWLINE)
                    for tag, t, record in piece["events"])


def cmd_tap(args: argparse.Namespace) -> int:
    import http.client
    from urllib.parse import urlencode

    import orjson

    from ..api.client import ApiUnreachable, Client

    query = [("id", i) for i in args.ids] + [(k, v) for k, v in (("match", args.match),
                                                                   ("limit", args.limit),
                                                                   ("rate", args.rate)) if v is not None]
    dropped, end = 0, None
    try:
        response = Client(args.api).open("/api/tap?" + urlencode(query))
        if response.status != 200:
            print(f"tap: {orjson.loads(response.read()).get('error')}", file=sys.stderr)
            return 1
        out = sys.stdout.buffer
        while line := response.readline():
            if line.startswith(b'{"component":'):
                out.write(_tapped_lines(line))
                out.flush()
            elif line.strip():
                notice = orjson.loads(line)
                dropped, end = notice.get("dropped", dropped), notice.get("end", end)
    except ApiUnreachable as e:
        print(f"tap: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    except (OSError, http.client.HTTPException) as e:
        print(f"tap: the stream broke off: {e!r}", file=sys.stderr)
    if end == "stopped":
        print("tap: the pipeline stopped", file=sys.stderr)
    if dropped:
        print(f"tap: {dropped} events dropped: past --rate a second, or this reader was slower than the "
              "pipeline", file=sys.stderr)
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("pipeline top: needs a terminal (it draws a live view); for a pipe or a script, "
              f"read http://{args.api}/api/components or use `pipeline tap`", file=sys.stderr)
        return EXIT_CONFIG
    from .top import main as top

    return top(args.api)


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot

    return plot(args.file, args.field, args.series, args.out, args.time_field, args.unit, args.title)


def cmd_plugins(args: argparse.Namespace) -> int:
    from .docs import plugin_help, plugin_list

    if not args.name:
        print(plugin_list())
        return 0
    text = plugin_help(args.name)
    if text is None:
        print(f"no plugin named {args.name!r}; `pipeline plugins` lists them", file=sys.stderr)
        return 1
    print(text)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pipeline", description="Collect, reshape and ship logs and metrics: "
                                "sources -> filters -> sinks, from one YAML file.")
    p.add_argument("--version", action="version", version=f"pipeline {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a config and print its graph")
    check.add_argument("config")
    check.set_defaults(func=cmd_check)
    run = sub.add_parser("run", help="run a config until SIGTERM/SIGINT (or once)", epilog=(
        "SIGTERM and SIGINT stop the sources and drain the sinks; SIGHUP reopens files (logrotate) "
        "and reloads the config if it passes `check` (docs/reload.md); SIGUSR1 writes out every "
        "buffer now. Exit status: 0 all delivered; 1 events not delivered (given up, or "
        "left at shutdown), state not saved, or (--once) a source failed; 2 config errors; 141 "
        "a sink's reader went away (stdout into `head`), as for a command SIGPIPE ended."))
    run.add_argument("config")
    run.add_argument("--once", action="store_true",
                     help="poll every source once, read streams to their end, flush and exit")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None)
    run.add_argument("--log-format", choices=["text", "json"], default=None,
                     help="the pipeline's own logs: text lines, or one JSON object a line")
    run.add_argument("--api", type=_listen, metavar="ADDRESS", default=None,
                     help="serve the api (docs/api.md) on host:port; a bare :port is loopback")
    run.set_defaults(func=cmd_run)
    api = dict(type=_listen, metavar="ADDRESS", help="the pipeline's api (default %(default)s)")
    tap = sub.add_parser("tap", help="print the events that come out of components, as JSON lines",
                         epilog="A tap never slows the pipeline: events past --rate, or that this reader is too "
                         "slow for, are dropped, and the count said at the end.")
    tap.add_argument("--api", default=API_ADDRESS, **api)  # type: ignore[arg-type]
    tap.add_argument("ids", nargs="+", metavar="ID", help="source or filter ids")
    tap.add_argument("--match", metavar="PATTERN", help="only events whose tag matches (fluentd patterns)")
    tap.add_argument("--limit", metavar="N", type=int, help="stop after N events")
    tap.add_argument("--rate", metavar="N", type=int,
                     help="take at most N events a second (default 1000, as Vector's tap samples); 0: every event")
    tap.set_defaults(func=cmd_tap)
    top = sub.add_parser("top", help="a live view of a running pipeline's components; q quits")
    top.add_argument("--api", default=API_ADDRESS, **api)  # type: ignore[arg-type]
    top.set_defaults(func=cmd_top)
    from ..config.dashboard import UNITS

    plot = sub.add_parser("plot", help="chart a field of a JSON lines file (the file sink's) as SVG",
                          epilog="The dashboard's chart (docs/dashboard.md), for a log written first "
                          "and looked at later.")
    plot.add_argument("file", metavar="FILE.jsonl")
    plot.add_argument("--field", required=True, help="the numeric field charted (a dotted path works)")
    plot.add_argument("--series", default=None, help="one line per value of this field")
    plot.add_argument("--out", required=True, metavar="CHART.svg")
    plot.add_argument("--time-field", default="time",
                      help="the records' time: epoch seconds or RFC 3339 (the file sink's time_key; "
                      "default %(default)s)")
    plot.add_argument("--unit", choices=UNITS, default=None, help="default: guessed from the field's name")
    plot.add_argument("--title", default=None, help="default: the field")
    plot.set_defaults(func=cmd_plot)
    plugins = sub.add_parser("plugins", help="list plugins, or show one plugin's options")
    plugins.add_argument("name", nargs="?")
    plugins.set_defaults(func=cmd_plugins)
    return p


def _listen(text: str) -> str:
    from ..config.addresses import Listen
    from ..config.options import Invalid

    try:
        return Listen().convert(text, "", None, None)  # type: ignore[arg-type]
    except Invalid as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # `pipeline plugins | head`: the reader left; say nothing more on a closed pipe
        _discard_stdout()
        return 0


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
