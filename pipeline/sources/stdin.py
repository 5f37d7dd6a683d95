"""Source `stdin`: records from standard input, until its end."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

from ..codecs.formats import DECODE_FORMATS, MAX_DOCUMENT_BYTES, MAX_LINE_BYTES, decoder
from ..config.options import Option, Size
from ..event import now_ns
from ..parsers import Format, ParsedLines, build, events_of
from ..plugin import Emit, StreamSource


class StdinSource(StreamSource):
    """Read records from standard input in the given format; ends at EOF.

    Input is read in blocks by a background thread; a batch holds every complete record
    of one block. 64 KiB blocks measured fastest: larger batches no longer fit the CPU
    caches as they pass through the filters (1 MiB blocks ran at half the speed).
    """

    options = (
        Option("format", Format(*DECODE_FORMATS), "json_lines",
               "json_lines, json (one document), msgpack, lines, or a parser: a name (nginx) or a "
               "map of its options ({type: regex, pattern: ...}); see docs/parsers.md"),
        Option("read_size", Size(), 64 * 1024, "bytes read at a time; one batch per read"),
        Option("max_bytes", Size(), MAX_DOCUMENT_BYTES,
               "json: a larger document is an error, not parsed; msgpack: a larger value ends the "
               "stream; default 16MiB"),
        Option("max_line_bytes", Size(), MAX_LINE_BYTES,
               "line formats: a longer line is an error, skipped to the next line; default 1MiB"),
    )

    async def run(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        blocks: asyncio.Queue[bytes] = asyncio.Queue()
        # the reader runs up to 4 blocks ahead without waiting for the event loop: waiting
        # for the loop to take each block made the two threads take turns (measured: the
        # loop idle a fifth of the time on a file that was there to read)
        ahead = threading.Semaphore(4)
        fd = sys.stdin.fileno()
        size = self.conf.read_size

        def reader() -> None:
            # a daemon thread: a read blocked on a terminal cannot hold up the exit. os.read,
            # not the buffered stdin: a daemon thread inside a BufferedReader at exit holds its
            # lock, and Python aborts ("could not acquire lock ... daemon threads")
            while True:
                ahead.acquire()
                try:
                    data = os.read(fd, size)
                except (OSError, ValueError):
                    data = b""
                try:
                    loop.call_soon_threadsafe(blocks.put_nowait, data)
                except RuntimeError:  # the loop is closed: the run is over
                    return
                if not data:
                    return

        threading.Thread(target=reader, name="stdin", daemon=True).start()
        tag = self.tag
        fmt = self.conf.format
        dec = (decoder(fmt, self.conf.max_bytes, self.conf.max_line_bytes) if isinstance(fmt, str)
               else ParsedLines(build(fmt, self.ctx), tag, "stdin", self.conf.max_line_bytes))
        parsed = isinstance(dec, ParsedLines)
        while True:
            data = await blocks.get()
            ahead.release()
            self.ctx.counters["bytes_in"] += len(data)
            records, problems = dec.feed(data) if data else dec.finish()
            for message, sample in problems:
                self.ctx.error(message, origin="stdin", data=sample)
            if parsed:
                if records:
                    await emit(events_of(records))
            elif records:
                t = now_ns()
                await emit([(tag, t, r) for r in records])
            if not data:
                return


PLUGIN = StdinSource
