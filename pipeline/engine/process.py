"""Settings of the process for a long run of many small, short-lived objects: the garbage
collector, glibc's malloc, and what asyncio reports of itself.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from typing import Any

from .context import RateLimitedLog

_limited = RateLimitedLog(logging.getLogger("pipeline.runtime"))


def tune(loop: asyncio.AbstractEventLoop) -> None:
    tune_gc()
    _keep_freed_memory()
    loop.set_exception_handler(loop_exception)


def tune_gc() -> None:
    # Events in flight are many small dicts that live for a while (a chunk holds
    # thousands): with CPython's default thresholds the collector rescans them
    # over and over (measured: parsing 30,000 Docker records 3x slower). They
    # hold no cycles, so collect far less often, and never rescan start-up objects.
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """What asyncio reports itself (accept() failing with EMFILE, which it retries a second
    later; a callback that raised): one line per kind a minute, not a traceback each time."""
    message = context.get("message") or "event loop error"
    e = context.get("exception")
    text = f"{message}: {type(e).__name__}: {e}" if e is not None else message
    _limited(logging.ERROR, f"{message} {type(e).__name__}", text, exc=e)


def _keep_freed_memory() -> None:
    """Have glibc keep freed memory for reuse instead of giving it back at once.

    Blobs, chunks and batches of records are allocated and freed all the time; with
    glibc's defaults the heap's top was handed back to the kernel and faulted in again
    for the next batch (18,000 brk calls in one benchmark run): a forward receiver spent
    1.3 s of 3 in the kernel. Freed memory past 64 MiB is still given back."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_trim_threshold, 64 << 20)
    mallopt(m_mmap_threshold, 32 << 20)
