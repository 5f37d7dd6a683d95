"""Source `proc_net_tcp`: the accept queue of every listening TCP socket, per listener."""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from pathlib import Path
from typing import Any

from ..codecs.netlink_diag import tcp_listeners
from ..config.fields import fields_of
from ..config.options import Enum, Int, ListOf, Option, Str
from ..event import Batch, Record, now_ns
from ..plugin import PollSource

LISTEN = "0A"
_KEY_BAD = re.compile(r"[^A-Za-z0-9]")


def hex_address(text: str) -> str:
    """/proc/net/tcp's address: hex in host byte order per 32-bit word."""
    raw = bytes.fromhex(text)
    words = b"".join(struct.pack("@I", struct.unpack(">I", raw[i:i + 4])[0]) for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def read_listeners(proc: Path) -> list[Record]:
    out = []
    for name, family in (("tcp", "ipv4"), ("tcp6", "ipv6")):
        try:
            lines = (proc / "net" / name).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            f = line.split()
            if len(f) < 10 or f[3] != LISTEN:
                continue
            address, port = f[1].split(":")
            _, rx = f[4].split(":")
            out.append({"family": family, "address": hex_address(address), "port": int(port, 16),
                        "queue": int(rx, 16), "inode": int(f[9])})
    return out


def read_netstat(proc: Path) -> dict[str, int]:
    """ListenOverflows and ListenDrops from /proc/net/netstat (TcpExt)."""
    try:
        lines = (proc / "net" / "netstat").read_text().splitlines()
    except FileNotFoundError:
        return {}
    for head, values in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            table = dict(zip(head.split()[1:], values.split()[1:]))
            return {k: int(table[k]) for k in ("ListenOverflows", "ListenDrops") if k in table}
    return {}


def netlink_backlogs() -> dict[int, tuple[int, int]]:
    """Socket inode -> (queue, backlog) of every listener, from sock_diag (what `ss` shows).
    By inode, not address: SO_REUSEPORT listeners share an address but not a queue."""
    return {s.inode: (s.queue, s.backlog)
            for family in (socket.AF_INET, socket.AF_INET6) for s in tcp_listeners(family)}


class ProcNetTcpSource(PollSource):
    """Accept queues of listening TCP sockets (IPv4 and IPv6), one record per listener.

    Each record: `address`, `port`, `family`, `queue` (connections waiting for accept(); it can
    reach backlog + 1), `backlog` (the listen() limit) and `queue_percent`, plus the host's
    `listen_overflows` and `listen_drops` counters from /proc/net/netstat, which the rate filter
    turns into overflows per second. The backlog is not in /proc/net/tcp: it comes from netlink
    sock_diag (as `ss -ltn` shows it as Send-Q). Without netlink (`backlog: proc`, `proc_root`
    pointing at another host's /proc, or netlink refused here, which is logged once as a
    warning), records have no `backlog` and no `queue_percent`. With `backlog: netlink` a
    refusal is a failure instead (a `--once` run exits 1).

    `layout: single` gives one record per poll instead, listeners keyed by address and port
    (`{"listeners": {"127_0_0_1_80": {"queue": 3, "backlog": 511, ...}}, "listen_overflows":
    ...}`): metric names that tell listeners apart, as the mackerel format needs.
    """

    options = (
        Option("ports", ListOf(Int(min=1, max=65535)), None, "only listeners on these ports"),
        Option("proc_root", Str(), "/proc", "a /proc to read: a host's, mounted elsewhere, for a sidecar"),
        Option("backlog", Enum("auto", "netlink", "proc"), "auto",
               "where the backlog comes from: netlink (a refusal fails the source), or none (proc); "
               "auto tries netlink and, if refused, warns once and goes on without"),
        Option("layout", Enum("listeners", "single"), "listeners",
               "a record per listener, or one record with listeners keyed by address_port"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.proc = Path(conf.proc_root)
        local = conf.proc_root.rstrip("/") in ("/proc", "")
        self.use_netlink = conf.backlog == "netlink" or (conf.backlog == "auto" and local)
        self.ports = set(conf.ports) if conf.ports else None

    @classmethod
    def fields(cls, conf, upstream, check):
        host = [("listen_overflows",), ("listen_drops",)]
        listener = ("queue", "backlog", "queue_percent")
        if conf.layout == "single":
            return fields_of([("listeners", "*", k) for k in listener] + host)
        return fields_of([("port",)] + [(k,) for k in listener] + host, many=True)

    def _backlogs(self) -> dict[int, tuple[int, int]]:
        if not self.use_netlink:
            return {}
        try:
            backlogs = netlink_backlogs()
        except OSError as e:
            message = f"netlink sock_diag refused ({e}): records have queue but no backlog"
            if self.conf.backlog == "netlink":
                self.ctx.health("netlink", False, message)
            else:
                # refused once is refused for good (a seccomp profile, a kernel without
                # sock_diag); the queue lengths are there: a warning, not a failure
                self.ctx.log.warning("%s; netlink is not tried again", message)
                self.use_netlink = False
            return {}
        self.ctx.health("netlink", True, "netlink sock_diag answers again")
        return backlogs

    async def poll(self) -> Batch:
        started = now_ns()
        try:
            listeners = read_listeners(self.proc)
        except OSError as e:
            self.ctx.health("proc", False, f"cannot read {self.proc}/net/tcp: {e}")
            return []
        self.ctx.health("proc", True)
        host: dict[str, Any] = {}
        counters = read_netstat(self.proc)
        if counters:
            host = {"listen_overflows": counters.get("ListenOverflows"), "listen_drops": counters.get("ListenDrops")}
        backlogs = self._backlogs()
        out = []
        for record in listeners:
            if self.ports is not None and record["port"] not in self.ports:
                continue
            found = backlogs.get(record.pop("inode"))
            if found is not None:
                record["queue"], record["backlog"] = found
                record["queue_percent"] = 100.0 * record["queue"] / found[1] if found[1] else None
            record.update(host)
            out.append(self.event(record, started))
        if self.conf.layout == "single":
            keyed = {_KEY_BAD.sub("_", f"{r['address']}_{r['port']}"):
                     {k: v for k, v in r.items() if k in ("queue", "backlog", "queue_percent")}
                     for _, _, r in out}
            return [self.event({"listeners": keyed, **host}, started)]
        return out


PLUGIN = ProcNetTcpSource
