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

from . import __version__

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


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("pipeline")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _load(path: str):
    from .config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as e:
        for line in e.errors.lines():
            print(line, file=sys.stderr)
        n = len(e.errors.items)
        print(f"{path}: {n} problem{'s' if n != 1 else ''}, nothing started", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    from .config import describe

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
    _setup_logging(args.log_level or graph.settings.log_level)
    for line in graph.warnings:
        # the log line says its level already
        logging.getLogger("pipeline.config").warning("%s", line.replace(": warning: ", ": ", 1))
    if os.environ.get("MACKEREL_AGENT_PLUGIN_META") == "1":
        from .sinks.stdout import plugin_meta

        # mackerel-agent asks once, at its start: the answer comes from the config alone,
        # so it neither polls (a source that is down must not empty it) nor touches state
        meta = plugin_meta(graph)
        if meta is not None:
            sys.stdout.buffer.write(meta)
            sys.stdout.buffer.flush()
            return 0
    from .runtime import EXIT_OUTPUT_CLOSED, Runtime

    async def main() -> int:
        runtime = Runtime(graph, once=args.once)
        return await runtime.run()

    try:
        status = asyncio.run(main())
    except KeyboardInterrupt:
        return 130
    if status == EXIT_OUTPUT_CLOSED:
        _discard_stdout()  # what is still buffered for the reader that left
    return status


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
    run.set_defaults(func=cmd_run)
    plugins = sub.add_parser("plugins", help="list plugins, or show one plugin's options")
    plugins.add_argument("name", nargs="?")
    plugins.set_defaults(func=cmd_plugins)
    return p


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
