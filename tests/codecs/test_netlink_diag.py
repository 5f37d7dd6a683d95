"""The sock_diag dump against the running kernel: real listeners, real queues, `ss` as the referee."""

from __future__ import annotations

import contextlib
import errno
import shutil
import socket
import subprocess

import pytest
from helpers import wait_for

from pipeline.codecs.netlink_diag import Listener, tcp_listeners


def listen(family: int, address: str, backlog: int, stack: contextlib.ExitStack) -> socket.socket:
    s = stack.enter_context(socket.socket(family))
    try:
        s.bind((address, 0))
    except OSError as e:
        pytest.skip(f"cannot bind {address}: {e}")
    s.listen(backlog)
    return s


def fill(listener: socket.socket, n: int, stack: contextlib.ExitStack) -> None:
    """n connections the listener never accepts: they wait in its accept queue."""
    for _ in range(n):
        stack.enter_context(socket.create_connection(listener.getsockname()[:2], timeout=5))


def mine(listener: socket.socket) -> Listener:
    [found] = [s for s in tcp_listeners(listener.family) if s.port == listener.getsockname()[1]]
    return found


def ss_listeners() -> dict[tuple[str, int], tuple[int, int]]:
    """(address, port) -> (Recv-Q, Send-Q) of every listener as iproute2's `ss -ltn` prints it."""
    out = {}
    for line in subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout.splitlines():
        _, recv_q, send_q, local = line.split()[:4]
        address, port = local.rsplit(":", 1)
        out[(address.strip("[]"), int(port))] = (int(recv_q), int(send_q))
    return out


def test_ipv4_and_ipv6_listeners_report_their_accept_queue_and_backlog():
    with contextlib.ExitStack() as stack:
        v4 = listen(socket.AF_INET, "127.0.0.1", 3, stack)
        v6 = listen(socket.AF_INET6, "::1", 4, stack)
        fill(v4, 2, stack)
        fill(v6, 5, stack)  # backlog + 1 wait; the 6th connection would not complete
        assert wait_for(lambda: mine(v4).queue == 2 and mine(v6).queue == 5)
        got4, got6 = mine(v4), mine(v6)
        assert (got4.family, got4.address, got4.backlog) == (socket.AF_INET, "127.0.0.1", 3)
        assert (got6.family, got6.address, got6.backlog) == (socket.AF_INET6, "::1", 4)
        assert got4.inode != got6.inode and got4.inode > 0
        if shutil.which("ss"):
            seen = ss_listeners()
            assert seen[("127.0.0.1", got4.port)] == (2, 3)
            assert seen[("::1", got6.port)] == (5, 4)


def test_a_dump_longer_than_one_reply_datagram_is_read_to_nlmsg_done():
    with contextlib.ExitStack() as stack:
        # the kernel's first reply datagram holds about 4 KiB, some 45 listeners
        listeners = [listen(socket.AF_INET, "127.0.0.1", 1 + i % 50, stack) for i in range(300)]
        got = {s.port: s.backlog for s in tcp_listeners(socket.AF_INET)}
        assert all(got[s.getsockname()[1]] == 1 + i % 50 for i, s in enumerate(listeners))


def test_a_request_the_kernel_refuses_raises_its_errno():
    # sock_diag answers NLMSG_ERROR with -EINVAL for a family beyond AF_MAX
    with pytest.raises(OSError) as refused:
        tcp_listeners(255)
    assert refused.value.errno == errno.EINVAL and "sock_diag refused" in str(refused.value)
