"""One log line per kind a minute, with a count of what was left out, never a traceback."""

from __future__ import annotations

import asyncio
import logging
import time

from pipeline.engine import context
from pipeline.engine.context import Context
from pipeline.engine.process import loop_exception


def test_repeats_are_counted_and_said_on_the_next_line(caplog, monkeypatch):
    monkeypatch.setattr(context, "LOG_EVERY", 0.3)
    ctx = Context("fw", "source")
    with caplog.at_level(logging.INFO, logger="pipeline"):
        for _ in range(50):
            ctx.unexpected("connection handler", KeyError("x"), origin="10.0.0.1:5")
            ctx.error("bad entry", origin="10.0.0.1:5")
        time.sleep(0.35)
        ctx.unexpected("connection handler", KeyError("x"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert lines[0].startswith("connection handler from 10.0.0.1:5: KeyError: \"'x'\"")
    assert lines[2].endswith("(49 more since the last such line)")
    assert not any(r.exc_info for r in caplog.records)
    assert ctx.counters["unexpected_errors"] == 51 and ctx.counters["bad_input"] == 50


def test_the_event_loop_reports_a_failing_callback_once(caplog):
    def boom() -> None:
        raise OSError(24, "Too many open files")

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(loop_exception)
        for _ in range(100):
            asyncio.get_running_loop().call_soon(boom)
        await asyncio.sleep(0.05)

    with caplog.at_level(logging.DEBUG, logger="asyncio"), caplog.at_level(logging.INFO, logger="pipeline"):
        asyncio.run(main())
    lines = [r for r in caplog.records if "Too many open files" in r.getMessage()]
    assert len(lines) == 1 and lines[0].name == "pipeline.runtime" and not lines[0].exc_info
