"""Source `exec`: run a command on a schedule and read records from its output."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal

from ..codecs.formats import DECODE_FORMATS, MAX_DOCUMENT_BYTES, decoder
from ..codecs.quote import quoted
from ..config.options import Bool, Duration, ListOf, MapOf, OneOf, Option, Size, Str
from ..event import Batch, now_ns
from ..parsers import Format, ParsedLines, build, events_of
from ..plugin import PollSource

STDERR_TAIL = 500
BLOCK = 64 * 1024


async def _read_at_most(stream: asyncio.StreamReader, limit: int) -> bytes | None:
    """All of `stream`, or None as soon as it passes `limit` bytes."""
    parts: list[bytes] = []
    size = 0
    while block := await stream.read(BLOCK):
        size += len(block)
        if size > limit:
            return None
        parts.append(block)
    return b"".join(parts)


async def _tail(stream: asyncio.StreamReader) -> bytes:
    tail = b""
    while block := await stream.read(BLOCK):
        tail = (tail + block)[-STDERR_TAIL:]
    return tail


class ExecSource(PollSource):
    """Run a command every `interval` and parse what it prints, like fluentd's in_exec.

    The command runs in its own process group: on `timeout`, and after it exits,
    the whole group is killed, so a command that leaves children behind leaves
    no orphans. A nonzero exit is logged with the tail of the command's stderr;
    records it printed before failing are still emitted. When the output passes `max_bytes`,
    the poll fails: the group is killed and nothing it printed is parsed.
    """

    options = (
        Option("command", OneOf(Str(), ListOf(Str(numbers=True))), help="argv list, or a string (split like a shell; "
               "run by /bin/sh with shell: true)"),
        Option("shell", Bool(), False, "run `command` with /bin/sh -c"),
        Option("timeout", Duration(min=0.001), 30.0, "kill the command's process group after this long"),
        Option("env", MapOf(Str(numbers=True)), {}, "environment variables added for the command",
               secret=True),
        Option("format", Format(*DECODE_FORMATS), "json",
               "json (one document), json_lines, msgpack, lines, or a parser: a name (nginx) or a "
               "map of its options ({type: regex, pattern: ...}); see docs/parsers.md"),
        Option("max_bytes", Size(), MAX_DOCUMENT_BYTES,
               "kill the command and parse nothing when it prints more than this; default 16MiB"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        cmd = conf.command
        if conf.shell:
            self.argv = ["/bin/sh", "-c", cmd if isinstance(cmd, str) else shlex.join(cmd)]
        else:
            self.argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        self.env = {**os.environ, **conf.env} if conf.env else None
        # what the user wrote names it in log lines, not the /bin/sh that runs it
        shown = cmd if isinstance(cmd, str) else shlex.join(cmd)
        self.name = (shown if conf.shell else self.argv[0] if self.argv else "?")[:80]
        fmt = conf.format
        self.parser = None if isinstance(fmt, str) else build(fmt, ctx)

    async def poll(self) -> Batch:
        started = now_ns()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=self.env, start_new_session=True)
        except OSError as e:
            self.ctx.health("exec", False, f"cannot run {self.name!r}: {e.strerror or e}", every_time=True)
            return []
        try:
            out, err = await asyncio.wait_for(self._output(proc), self.conf.timeout)
        except TimeoutError:
            self._kill_group(proc.pid)
            await proc.wait()
            self.ctx.health("exec", False, f"{self.name!r} killed after timeout {self.conf.timeout:g}s",
                            every_time=True)
            return []
        finally:
            # whatever the command left running in its group goes with it
            self._kill_group(proc.pid)
        if out is None:
            self.ctx.health("exec", False, f"{self.name!r} printed more than max_bytes "
                            f"({self.conf.max_bytes} bytes): killed, its output not parsed", every_time=True)
            return []
        origin = f"the output of {self.name!r}"
        if self.parser is not None:
            events, problems = ParsedLines(self.parser, self.tag, origin).decode(out)
            batch = events_of(events)
        else:
            records, problems = decoder(self.conf.format).decode(out)
            batch = [(self.tag, started, r) for r in records]
        for message, data in problems:
            self.ctx.error(message, origin=origin, data=data)
        if proc.returncode:
            tail = err.strip()
            self.ctx.health("exec", False, f"{self.name!r} exited with status {proc.returncode}"
                            + (f": {quoted(tail, end=True)}" if tail else ""), every_time=True)
        else:
            self.ctx.health("exec", True, f"{self.name!r} runs fine again")
        return batch

    async def _output(self, proc: asyncio.subprocess.Process) -> tuple[bytes | None, bytes]:
        """stdout (None past max_bytes: the command is killed, not waited for to print it all)
        and the tail of stderr, read together so neither pipe fills and blocks the command."""
        assert proc.stdout is not None and proc.stderr is not None

        async def stdout() -> bytes | None:
            out = await _read_at_most(proc.stdout, self.conf.max_bytes)  # type: ignore[arg-type]
            if out is None:
                self._kill_group(proc.pid)
            else:
                self.ctx.counters["bytes_in"] += len(out)
            return out

        out, err = await asyncio.gather(stdout(), _tail(proc.stderr))
        await proc.wait()
        return out, err

    @staticmethod
    def _kill_group(pgid: int) -> None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


PLUGIN = ExecSource
