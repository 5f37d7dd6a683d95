"""TCP listeners' accept queue and backlog over netlink sock_diag: what `ss -ltn` reads.

A dump request is one `inet_diag_req_v2` (linux/inet_diag.h) sent on a NETLINK_SOCK_DIAG
socket; the kernel answers with `inet_diag_msg`s in as many datagrams as it needs, then
NLMSG_DONE, or NLMSG_ERROR if it refuses the request. For a LISTEN socket the message's
`idiag_rqueue` is the current accept queue and `idiag_wqueue` the listen() backlog.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
TCP_LISTEN = 10

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# sdiag_family, sdiag_protocol, idiag_ext, pad, idiag_states, then inet_diag_sockid (all zero:
# no filter on addresses): sport, dport (big endian), src[16], dst[16], if, cookie[2]
REQ_V2 = struct.Struct("=BBBxI48x")
# idiag_family, state, timer, retrans, then inet_diag_sockid; then expires, rqueue, wqueue, uid, inode
DIAG_MSG = struct.Struct("=BBBB2s2x16s16x4x8xIIIII")
PORT = struct.Struct(">H")
ERRNO = struct.Struct("=i")
#: the kernel caps a dump datagram at 32 KiB whatever the buffer offered (netlink_recvmsg)
RECV_BUFFER = 65536


@dataclass(frozen=True)
class Listener:
    family: int
    address: str
    port: int
    queue: int
    backlog: int
    inode: int


def _align(n: int) -> int:
    return (n + 3) & ~3


def request(family: int, seq: int) -> bytes:
    body = REQ_V2.pack(family, socket.IPPROTO_TCP, 0, 1 << TCP_LISTEN)
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def parse(datagram: bytes, seq: int) -> tuple[list[Listener], bool]:
    """The listeners in one reply datagram, and whether it ended the dump. A refusal
    (NLMSG_ERROR, or NLMSG_DONE carrying an error) raises OSError with the kernel's errno."""
    out: list[Listener] = []
    offset = 0
    while offset + NLMSGHDR.size <= len(datagram):
        length, kind, _, msg_seq, _ = NLMSGHDR.unpack_from(datagram, offset)
        if length < NLMSGHDR.size or offset + length > len(datagram):
            raise OSError(errno.EBADMSG, f"sock_diag: a reply message of {length} bytes does not fit")
        body = offset + NLMSGHDR.size
        offset += _align(length)
        if msg_seq != seq:
            continue  # an answer to an earlier request on this socket, not to ours
        if kind in (NLMSG_ERROR, NLMSG_DONE):
            code = -ERRNO.unpack_from(datagram, body)[0] if length >= NLMSGHDR.size + ERRNO.size else 0
            if code:
                raise OSError(code, f"sock_diag refused the request: {os.strerror(code)}")
            if kind == NLMSG_DONE:
                return out, True
            continue  # NLMSG_ERROR with 0 is an acknowledgement
        if kind != SOCK_DIAG_BY_FAMILY or length < NLMSGHDR.size + DIAG_MSG.size:
            continue
        family, _, _, _, sport, src, _, rqueue, wqueue, _, inode = DIAG_MSG.unpack_from(datagram, body)
        raw = src[:4] if family == socket.AF_INET else src
        out.append(Listener(family, str(ipaddress.ip_address(raw)), PORT.unpack(sport)[0], rqueue, wqueue, inode))
    return out, False


def tcp_listeners(family: int, timeout: float = 5.0) -> list[Listener]:
    """Every TCP LISTEN socket of `family` (AF_INET or AF_INET6) in this network namespace.
    OSError when netlink or sock_diag is refused (a seccomp profile, a kernel without it)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as sock:
        # the kernel fills a dump while sendmsg/recvmsg run, so recv does not wait on
        # anything; the timeout is only a bound should a kernel never send NLMSG_DONE
        sock.settimeout(timeout)
        seq = 1
        sock.sendall(request(family, seq))
        out: list[Listener] = []
        while True:
            datagram, _, flags, _ = sock.recvmsg(RECV_BUFFER)
            if flags & socket.MSG_TRUNC:
                raise OSError(errno.EMSGSIZE, "sock_diag: a reply did not fit the receive buffer")
            found, done = parse(datagram, seq)
            out.extend(found)
            if done:
                return out
