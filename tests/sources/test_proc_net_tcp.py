import asyncio
import shutil
import socket
import sys
import time

from helpers import FIXTURES, make_plugin

from pipeline.sources.proc_net_tcp import read_netstat

PROCNET = FIXTURES / "procnet"


def _poll(**options):
    src = make_plugin("source", "proc_net_tcp", **options)
    return src, asyncio.run(src.poll())


def _recorded_proc(tmp_path):
    net = tmp_path / "net"
    net.mkdir()
    for name in ("tcp", "tcp6", "netstat"):
        shutil.copy(PROCNET / name, net / name)
    return tmp_path


def test_recorded_proc_root(tmp_path):
    root = _recorded_proc(tmp_path)
    src, batch = _poll(proc_root=str(root), netlink=False, ports=[8800, 8801, 8803, 8804])
    got = {(r["address"], r["port"]): r for _, _, r in batch if "port" in r}
    # what SOURCE.txt says the never-accepting listeners held when the files were read
    assert {k: r["queue"] for k, r in got.items()} == {
        ("127.0.0.1", 8800): 50, ("::1", 8801): 30, ("127.0.0.1", 8803): 17, ("127.0.0.1", 8804): 0}
    assert got[("::1", 8801)]["family"] == "ipv6"
    assert not any("backlog" in r for r in got.values())  # /proc alone does not have it
    host = batch[-1][2]
    tcpext = read_netstat(PROCNET / "netstat")
    assert host == {"listen_overflows": tcpext["ListenOverflows"], "listen_drops": tcpext["ListenDrops"]}
    assert host["listen_overflows"] > 0


def test_single_layout_keys_listeners(tmp_path):
    root = _recorded_proc(tmp_path)
    _, batch = _poll(proc_root=str(root), netlink=False, ports=[8801, 8803], layout="single")
    [(_, _, record)] = batch
    assert record["listeners"] == {"__1_8801": {"queue": 30}, "127_0_0_1_8803": {"queue": 17}}
    assert "listen_overflows" in record


def test_missing_proc_is_counted_not_raised(tmp_path):
    src, batch = _poll(proc_root=str(tmp_path), netlink=False)
    assert [r for _, _, r in batch] == [{}]
    assert src.ctx.counters["bad_procfile"] == 1  # netstat; absent tcp/tcp6 mean no such family


def test_real_listener_fills_to_backlog_plus_one_and_overflows():
    backlog = 2
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(backlog)  # and never accept()
    port = server.getsockname()[1]
    clients = []
    try:
        before = _poll(ports=[port])[1]
        assert [r["queue"] for _, _, r in before if "port" in r] == [0]
        overflows_before = before[-1][2]["listen_overflows"]
        for _ in range(backlog + 4):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            clients.append(c)
        deadline = time.monotonic() + 10
        while True:
            src, batch = _poll(ports=[port])
            [listener] = [r for _, _, r in batch if "port" in r]
            host = batch[-1][2]
            if listener["queue"] == backlog + 1 and host["listen_overflows"] > overflows_before:
                break
            assert time.monotonic() < deadline, (listener, host, overflows_before)
            time.sleep(0.05)
        assert listener == {"family": "ipv4", "address": "127.0.0.1", "port": port,
                            "queue": backlog + 1, "backlog": backlog}
    finally:
        for c in clients:
            c.close()
        server.close()


def test_without_pyroute2_queue_from_proc_and_no_backlog(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "pyroute2", None)  # as if not installed: import fails
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        src = make_plugin("source", "proc_net_tcp", ports=[port])
        first = asyncio.run(src.poll())
        second = asyncio.run(src.poll())
    for batch in (first, second):
        assert [r for _, _, r in batch if "port" in r] == [
            {"family": "ipv4", "address": "127.0.0.1", "port": port, "queue": 0}]
        assert "listen_overflows" in batch[-1][2]
    warnings = [r.getMessage() for r in caplog.records if "no backlog" in r.getMessage()]
    assert warnings == ["no backlog limits (pyroute2 is not installed); reporting accept-queue "
                        "lengths from /proc/net only"]  # once, not per poll
