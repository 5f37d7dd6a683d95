"""Source proc_net_tcp on a real listener that never accepts, and on the recorded /proc files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
from helpers import FIXTURES, ROOT, make_plugin, run_pipeline, wait_for
from mackerel_rules import parse_meta, uncovered, value_names

from pipeline.sources.proc_net_tcp import read_netstat


def poll(source):
    return [r for _, _, r in asyncio.run(source.poll())]


def test_queue_fills_to_backlog_plus_one_and_overflows_count():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2)  # never accepted
    port = listener.getsockname()[1]
    source = make_plugin("source", "proc_net_tcp", ports=[port])
    [idle] = poll(source)
    assert idle["queue"] == 0 and idle["backlog"] == 2 and idle["address"] == "127.0.0.1"
    before = idle["listen_overflows"]
    clients = []
    for _ in range(6):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        clients.append(c)
    try:
        assert wait_for(lambda: poll(source)[0]["queue"] == 3)  # backlog + 1
        assert wait_for(lambda: poll(source)[0]["listen_overflows"] > before, timeout=10)
        [full] = poll(source)
        assert full["backlog"] == 2 and full["queue_percent"] == 150.0 and full["family"] == "ipv4"
        assert full["listen_drops"] >= full["listen_overflows"] - before
    finally:
        for c in clients:
            c.close()
        listener.close()


def test_ipv6_listener():
    listener = socket.socket(socket.AF_INET6)
    try:
        listener.bind(("::1", 0))
    except OSError:
        listener.close()
        pytest.skip("no IPv6 loopback here")
    listener.listen(5)
    port = listener.getsockname()[1]
    try:
        [row] = poll(make_plugin("source", "proc_net_tcp", ports=[port]))
        assert row["address"] == "::1" and row["family"] == "ipv6" and row["backlog"] == 5
    finally:
        listener.close()


def test_recorded_proc_files_through_proc_root(tmp_path):
    (tmp_path / "net").mkdir()
    for name in ("tcp", "tcp6", "netstat"):
        shutil.copy(FIXTURES / "procnet" / name, tmp_path / "net" / name)
    rows = poll(make_plugin("source", "proc_net_tcp", proc_root=str(tmp_path), ports=[8800, 8801, 8803, 8804]))
    got = {(r["address"], r["port"]): r["queue"] for r in rows}
    assert got == {("127.0.0.1", 8800): 50, ("::1", 8801): 30, ("127.0.0.1", 8803): 17, ("127.0.0.1", 8804): 0}
    # another host's /proc: netlink cannot see its sockets, so no backlog is claimed
    assert all("backlog" not in r for r in rows)
    netstat = read_netstat(tmp_path)
    assert all(r["listen_overflows"] == netstat["ListenOverflows"] for r in rows)


def test_accept_queue_example_as_a_mackerel_plugin_names_each_listener(tmp_path):
    with socket.socket() as a, socket.socket() as b:
        for s, backlog in ((a, 5), (b, 7)):
            s.bind(("127.0.0.1", 0))
            s.listen(backlog)
        ports = [a.getsockname()[1], b.getsockname()[1]]
        conf = tmp_path / "accept-queue.yaml"
        conf.write_text((ROOT / "conf" / "accept-queue.yaml").read_text()
                        .replace("[80, 443, 8080]", str(ports)))
        values = run_pipeline("run", "--once", str(conf))
        again = run_pipeline("run", "--once", str(conf))
        meta = run_pipeline("run", "--once", str(conf), env={"MACKEREL_AGENT_PLUGIN_META": "1"})
    assert values.returncode == again.returncode == meta.returncode == 0, values.stderr + again.stderr + meta.stderr
    names = value_names(values.stdout)
    assert len(names) == len(set(names))  # two listeners never share a metric name
    got = dict(line.split("\t")[:2] for line in values.stdout.decode().splitlines())
    for port, backlog in zip(ports, (5, 7), strict=True):
        key = f"accept_queue.listeners.127_0_0_1_{port}.integer"
        assert (got[f"{key}.queue"], got[f"{key}.backlog"]) == ("0", str(backlog))
    # the host's overflows only grow: printed as their increase, from the second run on
    assert not [n for n in names if "listen_overflows" in n]
    assert "accept_queue.per_minute.listen_overflows" in value_names(again.stdout)
    graphs = parse_meta(meta.stdout)
    assert graphs["accept_queue.listeners.#.integer"]["unit"] == "integer"
    assert {m["name"] for m in graphs["accept_queue.listeners.#.integer"]["metrics"]} == {"queue", "backlog"}
    assert [m["name"] for m in graphs["accept_queue.listeners.#.percentage"]["metrics"]] == ["queue_percent"]
    assert graphs["accept_queue.per_minute"]["unit"] == "integer"
    assert uncovered(names + value_names(again.stdout), graphs) == []


def test_reuseport_listeners_on_one_port_each_get_their_own_backlog():
    with socket.socket() as a, socket.socket() as b:
        for s, backlog in ((a, 2), (b, 6)):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", a.getsockname()[1] if s is b else 0))
            s.listen(backlog)
        rows = poll(make_plugin("source", "proc_net_tcp", ports=[a.getsockname()[1]]))
    assert sorted(r["backlog"] for r in rows) == [2, 6]


def no_netlink(*args: str) -> subprocess.Popen:
    """`python -m pipeline ARGS` where socket(AF_NETLINK) is refused, as under a seccomp profile."""
    command = [sys.executable, str(ROOT / "tests" / "no_netlink.py"), sys.executable, "-m", "pipeline", *args]
    return subprocess.Popen(command, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def refusing():
    """Skip where tests/no_netlink.py cannot install its seccomp filter (exit 77)."""
    check = subprocess.run([sys.executable, str(ROOT / "tests" / "no_netlink.py"), "true"],
                           capture_output=True, text=True, timeout=30)
    if check.returncode == 77:
        pytest.skip(f"cannot refuse netlink here: {check.stderr.strip()}")


def refused_run(conf, *args: str) -> tuple[int, str, str]:
    proc = no_netlink("run", *args, str(conf))
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out.decode(), err.decode()


def queued_listener(stack: contextlib.ExitStack) -> int:
    """A listener with backlog 4 and one connection waiting in its accept queue: its port."""
    listener = stack.enter_context(socket.socket())
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    stack.enter_context(socket.create_connection(("127.0.0.1", port)))
    assert wait_for(lambda: poll(make_plugin("source", "proc_net_tcp", ports=[port]))[0]["queue"] == 1)
    return port


def test_netlink_refused_the_mackerel_example_warns_and_exits_0_with_queue_lengths(tmp_path, refusing):
    conf = tmp_path / "accept-queue.yaml"
    with contextlib.ExitStack() as stack:
        port = queued_listener(stack)
        conf.write_text((ROOT / "conf" / "accept-queue.yaml").read_text().replace("[80, 443, 8080]", f"[{port}]"))
        code, out, err = refused_run(conf, "--once")
    assert code == 0, err
    got = dict(line.split("\t")[:2] for line in out.splitlines())
    assert got[f"accept_queue.listeners.127_0_0_1_{port}.integer.queue"] == "1"
    assert not [name for name in got if name.endswith(".backlog")]
    assert err.count("warning source.listen: netlink sock_diag refused") == 1 and " error " not in err, err


def test_netlink_refused_is_warned_once_over_many_polls(tmp_path, refusing):
    conf = tmp_path / "c.yaml"
    with contextlib.ExitStack() as stack:
        port = queued_listener(stack)
        conf.write_text(f"sources:\n  listen: {{type: proc_net_tcp, ports: [{port}], interval: 0.1s}}\n"
                        "sinks:\n  out: {type: stdout, inputs: [listen]}\n")
        proc = no_netlink("run", str(conf))
        assert proc.stdout is not None
        rows = [json.loads(proc.stdout.readline()) for _ in range(5)]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert [(r["port"], r["queue"], "backlog" in r) for r in rows] == [(port, 1, False)] * 5
    assert err.decode().count("netlink sock_diag refused") == 1, err.decode()


def test_netlink_refused_with_backlog_netlink_is_a_failure(tmp_path, refusing):
    conf = tmp_path / "c.yaml"
    conf.write_text("sources:\n  listen: {type: proc_net_tcp, backlog: netlink}\n"
                    "sinks:\n  out: {type: stdout, inputs: [listen]}\n")
    code, _, err = refused_run(conf, "--once")
    assert code == 1 and "error source.listen: netlink sock_diag refused" in err, err
