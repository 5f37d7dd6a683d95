"""Source `exec`: run a command on a schedule and read records from its output."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal

from ..event import Batch, now_ns
from ..formats import DECODE_FORMATS, decoder
from ..options import Bool, Duration, Enum, ListOf, MapOf, OneOf, Option, Str
from ..plugin import PollSource

STDERR_TAIL = 500


class ExecSource(PollSource):
    """Run a command every `interval` and parse what it prints, like fluentd's in_exec.

    The command runs in its own process group: on `timeout`, and after it exits,
    the whole group is killed, so a command that leaves children behind leaves
    no orphans. A nonzero exit is logged with the tail of the command's stderr;
    records it printed before failing are still emitted.
    """

    options = (
        Option("command", OneOf(Str(), ListOf(Str(numbers=True))), help="argv list, or a string (split like a shell; "
               "run by /bin/sh with shell: true)"),
        Option("shell", Bool(), False, "run `command` with /bin/sh -c"),
        Option("timeout", Duration(min=0.001), 30.0, "kill the command's process group after this long"),
        Option("env", MapOf(Str(numbers=True)), {}, "environment variables added for the command"),
        Option("format", Enum(*DECODE_FORMATS), "json", "json (one document), json_lines, msgpack or lines"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        cmd = conf.command
        if conf.shell:
            self.argv = ["/bin/sh", "-c", cmd if isinstance(cmd, str) else shlex.join(cmd)]
        else:
            self.argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        self.env = {**os.environ, **conf.env} if conf.env else None
        self.name = self.argv[0] if self.argv else "?"

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
            out, err = await asyncio.wait_for(proc.communicate(), self.conf.timeout)
        except TimeoutError:
            self._kill_group(proc.pid)
            out, err = b"", b""
            await proc.wait()
            self.ctx.health("exec", False, f"{self.name!r} killed after timeout {self.conf.timeout:g}s",
                            every_time=True)
            return []
        finally:
            # whatever the command left running in its group goes with it
            self._kill_group(proc.pid)
        records, problems = decoder(self.conf.format).decode(out)
        for message, data in problems:
            self.ctx.error(message, origin=f"the output of {self.name!r}", data=data)
        if proc.returncode:
            tail = err[-STDERR_TAIL:].decode("utf-8", "replace").strip()
            self.ctx.health("exec", False, f"{self.name!r} exited with status {proc.returncode}"
                            + (f": {tail}" if tail else ""), every_time=True)
        else:
            self.ctx.health("exec", True, f"{self.name!r} runs fine again")
        return [(self.tag, started, r) for r in records]

    @staticmethod
    def _kill_group(pgid: int) -> None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


PLUGIN = ExecSource
