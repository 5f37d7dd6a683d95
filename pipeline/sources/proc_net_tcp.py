"""Accept-queue length and backlog of each TCP listener, plus the host's listen overflow counters.

/proc/net/tcp{,6} gives a LISTEN socket's current accept-queue length (rx_queue)
but not its backlog limit (tx_queue is always 0 there); only netlink sock_diag
has that, as `ss -ltn` shows in Send-Q. pyroute2 speaks sock_diag; without it,
or where netlink is refused, records carry no `backlog`.
"""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

from ..event import Batch, Record
from ..options import Bool, Enum, Int, ListOf, Option, Str
from ..plugin import PollSource

_LISTEN = "0A"
_KEY_BAD = re.compile(r"[^A-Za-z0-9]")


def decode_address(hex_addr: str) -> str:
    """/proc/net/tcp's address: hex bytes in host (little-endian) order per 32-bit word."""
    raw = bytes.fromhex(hex_addr)
    swapped = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, swapped)


def read_listeners(path: Path, family: str) -> list[Record]:
    """LISTEN rows of one /proc/net/tcp-style file: address, port, queue, inode."""
    out = []
    with open(path) as f:
        next(f, None)  # header
        for line in f:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            addr, port = fields[1].split(":")
            rx_queue = fields[4].split(":")[1]
            out.append({"family": family, "address": decode_address(addr), "port": int(port, 16),
                        "queue": int(rx_queue, 16), "inode": int(fields[9])})
    return out


def read_netstat(path: Path) -> dict[str, int]:
    """The TcpExt counters of /proc/net/netstat (a header line, then a values line)."""
    with open(path) as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return dict(zip(names.split()[1:], map(int, values.split()[1:]), strict=False))
    return {}


def netlink_backlogs() -> dict[int, int]:
    """inode -> backlog limit of every listener in this network namespace (sock_diag)."""
    from pyroute2 import DiagSocket

    out = {}
    with DiagSocket() as diag:
        diag.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in diag.get_sock_stats(family=family, states=1 << 10):  # TCP_LISTEN
                out[msg["idiag_inode"]] = msg["idiag_wqueue"]
    return out


class ProcNetTcp(PollSource):
    """Accept-queue length and backlog per TCP listener (IPv4 and IPv6), plus ListenOverflows/ListenDrops."""

    options = (
        Option("ports", ListOf(Int(min=1, max=65535)), [], "only listeners on these ports (default: all)"),
        Option("proc_root", Str(), "/proc", "where /proc is mounted (a host's /proc in a sidecar)"),
        Option("netlink", Bool(), True,
               "ask sock_diag (pyroute2) for each listener's backlog; off: /proc only, no backlog"),
        Option("layout", Enum("listeners", "single"), "listeners",
               "listeners: a record per listener and one of host counters; "
               "single: one record, listeners keyed by address_port (for mackerel)"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self._net = Path(conf.proc_root) / "net"
        self._netlink = conf.netlink

    async def _backlogs(self) -> dict[int, int]:
        if not self._netlink:
            return {}
        try:
            # pyroute2's sync socket runs its own event loop, so it needs a thread without one
            return await asyncio.to_thread(netlink_backlogs)
        except ImportError:
            reason = "pyroute2 is not installed"
        except OSError as e:
            reason = f"netlink refused: {e}"
        self._netlink = False  # a missing module or a refusing kernel stays that way
        self.ctx.log.warning("no backlog limits (%s); reporting accept-queue lengths from %s only",
                             reason, self._net)
        return {}

    async def poll(self) -> Batch:
        listeners: list[Record] = []
        for name, family in (("tcp", "ipv4"), ("tcp6", "ipv6")):
            try:
                listeners += read_listeners(self._net / name, family)
            except FileNotFoundError:
                continue  # a kernel without IPv6 has no tcp6
            except (OSError, ValueError, IndexError) as e:
                self.ctx.error(f"cannot read: {e}", origin=str(self._net / name), kind="bad_procfile")
        if self.conf.ports:
            wanted = set(self.conf.ports)
            listeners = [r for r in listeners if r["port"] in wanted]
        backlogs = await self._backlogs()
        for r in listeners:
            inode = r.pop("inode")
            if inode in backlogs:
                r["backlog"] = backlogs[inode]
        try:
            tcpext = read_netstat(self._net / "netstat")
        except (OSError, ValueError) as e:
            self.ctx.error(f"cannot read: {e}", origin=str(self._net / "netstat"), kind="bad_procfile")
            tcpext = {}
        host = {k: tcpext[n] for k, n in (("listen_overflows", "ListenOverflows"),
                                          ("listen_drops", "ListenDrops")) if n in tcpext}
        if self.conf.layout == "single":
            keyed = {_KEY_BAD.sub("_", f"{r['address']}_{r['port']}"):
                     {k: v for k, v in r.items() if k in ("queue", "backlog")} for r in listeners}
            return [self.event({"listeners": keyed, **host})]
        return [self.event(r) for r in listeners] + [self.event(host)]


PLUGIN = ProcNetTcp
