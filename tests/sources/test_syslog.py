"""Source syslog against a real rsyslogd started here, forwarding what `logger` gives it over
UDP, TCP (line feeds and octet counting) and TLS, and `logger` itself on a unix socket; then
what the source must bound: message sizes, framing, idle and too many connections."""

from __future__ import annotations

import socket
import time

import pytest
from helpers import free_port, run_pipeline, wait_for
from syslog_peers import Rsyslog, SyslogReceiver, logger, numbered, numbers, settle

N = 300


def forwarder(tmp, actions: str, tls_certs=None) -> tuple[Rsyslog, int]:
    """rsyslogd taking `logger`'s messages on a TCP port and forwarding them with `actions`."""
    port = free_port()
    body = (f'module(load="imtcp")\ninput(type="imtcp" address="127.0.0.1" port="{port}")\n{actions}')
    return Rsyslog(tmp, body, tls_certs=tls_certs).start(port), port


def omfwd(port: int, protocol: str, extra: str = "") -> str:
    # a queue of its own that retries for ever: rsyslog holds what our source is not there for yet
    return (f'action(type="omfwd" target="127.0.0.1" port="{port}" protocol="{protocol}" {extra} '
            'action.resumeRetryCount="-1" action.resumeInterval="1" queue.type="LinkedList")\n')


def log_numbered(port: int, n: int = N, start: int = 0, tag: str = "numbered", prefix: str = "n") -> None:
    logger("-n", "127.0.0.1", "-P", str(port), "-T", "--rfc3164", "-t", tag, "--id=4242", "-p", "local3.warning",
           input=numbered(n, start, prefix))


@pytest.mark.parametrize("protocol, extra", [("udp", ""), ("tcp", ""), ("tcp", 'TCP_Framing="octet-counted"')],
                         ids=["udp", "tcp-lf", "tcp-octet-counted"])
def test_rsyslog_forwards_logger_messages(tmp_path, protocol, extra):
    r = SyslogReceiver(tmp_path, f"mode: {'udp' if protocol == 'udp' else 'tcp'}, source_address_key: peer")
    rsyslog, port = forwarder(tmp_path, omfwd(r.port, protocol, extra))
    try:
        log_numbered(port)
        assert wait_for(lambda: len(r.records()) >= N, 30), r.stderr()
        settle()
        records = r.records()
        assert numbers(r.messages()) == list(range(N))
        first = records[0]
        assert first["ident"] == "numbered" and first["pid"] == "4242"
        assert first["facility"] == "local3" and first["severity"] == "warning" and first["pri"] == 19 * 8 + 4
        assert first["host"] and first["message"] == "n=0 café"
        assert first["peer"].startswith("127.0.0.1:")
        assert r.error_records() == []
    finally:
        rsyslog.stop()
        r.stop()


def test_one_port_tells_the_framing_of_each_connection(tmp_path):
    """rsyslog forwarding over two connections to the same port, one octet-counted and one not;
    a message with a line break stays whole on the octet-counted one (RFC 6587)."""
    r = SyslogReceiver(tmp_path, "mode: tcp")
    rsyslog, port = forwarder(tmp_path, 'if $programname == "counted" then {\n'
                              + omfwd(r.port, "tcp", 'TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"')
                              + '} else {\n' + omfwd(r.port, "tcp") + '}\n')
    try:
        log_numbered(port, 100, tag="counted", prefix="c")
        log_numbered(port, 100, tag="lines", prefix="l")
        assert wait_for(lambda: len(r.records()) >= 200, 30), r.stderr()
        settle()
        assert numbers(r.messages(), "c") == list(range(100)) and numbers(r.messages(), "l") == list(range(100))
        # the octet-counted ones were sent as RFC 5424, the others as RFC 3164
        assert {("msgid" in x, x["ident"]) for x in r.records()} == {(True, "counted"), (False, "lines")}
    finally:
        rsyslog.stop()
        r.stop()


def test_an_octet_counted_message_keeps_its_line_breaks(tmp_path):
    r = SyslogReceiver(tmp_path, "mode: tcp")
    try:
        logger("-n", "127.0.0.1", "-P", str(r.port), "-T", "--octet-count", "--rfc5424", "-t", "multi",
               "first line\nsecond line")
        logger("-n", "127.0.0.1", "-P", str(r.port), "-T", "--octet-count", "--rfc5424", "-t", "multi", "after")
        assert wait_for(lambda: len(r.records()) >= 2), r.stderr()
        assert [x["message"] for x in r.records()] == ["first line\nsecond line", "after"]
    finally:
        r.stop()


def test_tls_from_rsyslog(tmp_path, certs):
    r = SyslogReceiver(tmp_path, f"mode: tcp, tls: {{cert: {certs}/cert.pem, key: {certs}/key.pem}}")
    rsyslog, port = forwarder(tmp_path, omfwd(r.port, "tcp", 'StreamDriver="ossl" StreamDriverMode="1" '
                                              'StreamDriverAuthMode="x509/name" StreamDriverPermittedPeers="localhost"'),
                              tls_certs=certs)
    try:
        log_numbered(port)
        assert wait_for(lambda: len(r.records()) >= N, 30), r.stderr()
        settle()
        assert numbers(r.messages()) == list(range(N))
        with raw(r.port, b"<13>Jan  1 00:00:00 h app: n=-1 in plain text\n") as s:
            assert closed(s)  # not a TLS handshake
        assert len(r.records()) == N
    finally:
        rsyslog.stop()
        r.stop()


def test_messages_through_a_restart_of_rsyslog(tmp_path):
    r = SyslogReceiver(tmp_path, "mode: tcp")
    rsyslog, port = forwarder(tmp_path, omfwd(r.port, "tcp", 'TCP_Framing="octet-counted"'))
    try:
        log_numbered(port, 100)
        assert wait_for(lambda: len(r.records()) >= 100, 30), r.stderr()
        rsyslog.stop()
        rsyslog.start(port)
        log_numbered(port, 100, start=100)
        assert wait_for(lambda: len(r.records()) >= 200, 30), r.stderr()
        settle()
        assert numbers(r.messages()) == list(range(200))
    finally:
        rsyslog.stop()
        r.stop()


@pytest.mark.parametrize("mode, fmt", [("unix_datagram", ""),
                                       ("unix_datagram", "--rfc3164"), ("unix_datagram", "--rfc5424"),
                                       ("unix_stream", "--rfc5424")],
                         ids=["local", "rfc3164", "rfc5424", "stream"])
def test_unix_socket_as_dev_log(tmp_path, mode, fmt):
    path = tmp_path / "log.sock"
    r = SyslogReceiver(tmp_path, f"mode: {mode}, path: {path}, source_address_key: peer")
    kind = "-T" if mode == "unix_stream" else "-d"
    try:
        assert path.stat().st_mode & 0o777 == 0o666  # every user's programs may log
        for i in range(50):
            logger("-u", str(path), kind, "-t", "app", "--id=99", "-p", "mail.err", *([fmt] if fmt else []),
                   f"n={i}")
        assert wait_for(lambda: len(r.records()) >= 50), r.stderr()
        records = r.records()
        assert numbers(r.messages()) == list(range(50))
        assert {(x["ident"], x["pid"], x["facility"], x["severity"], x["peer"]) for x in records} == \
            {("app", "99", "mail", "err", str(path))}
    finally:
        r.stop()
    assert not path.exists()  # removed at the end


def test_a_stale_socket_file_is_replaced_a_live_one_is_not(tmp_path):
    path = tmp_path / "log.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody reads it: what a crash leaves
    r = SyslogReceiver(tmp_path, f"mode: unix_datagram, path: {path}")
    try:
        logger("-u", str(path), "--rfc5424", "-t", "app", "n=1")
        assert wait_for(lambda: len(r.records()) == 1), r.stderr()
        with pytest.raises(AssertionError):
            SyslogReceiver(tmp_path, f"mode: unix_datagram, path: {path}", name="second")
        assert "another program listens on it" in (tmp_path / "second" / "stderr.log").read_text()
        # nor by a stream socket, which cannot tell whether the datagram one is live
        with pytest.raises(AssertionError):
            SyslogReceiver(tmp_path, f"mode: unix_stream, path: {path}", name="third")
        assert "a socket file that may be in use" in (tmp_path / "third" / "stderr.log").read_text()
        logger("-u", str(path), "--rfc5424", "-t", "app", "n=2")
        assert wait_for(lambda: len(r.records()) == 2), r.stderr()
    finally:
        r.stop()


def raw(port: int, data: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(data)
    return s


def closed(s: socket.socket, timeout: float = 10) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def frame(text: str) -> bytes:
    data = text.encode()
    return b"%d %s" % (len(data), data)


def test_bad_and_oversized_input_is_reported_and_the_rest_flows(tmp_path):
    r = SyslogReceiver(tmp_path, "mode: tcp, max_message_bytes: 200")
    try:
        big = "<13>1 2024-01-01T00:00:00Z h app - - - " + "x" * 300
        with raw(r.port, frame("<13>1 2024-01-01T00:00:00Z h app - - - n=1") + frame(big)
                 + frame("<13>1 2024-01-01T00:00:00Z h app - - - n=2")) as s:
            s.shutdown(socket.SHUT_WR)
            assert closed(s)
        with raw(r.port, b"<13>Jan  1 00:00:00 h app: n=3\nnot syslog at all\n" + b"y" * 300 + b"\n"
                 + b"<13>Jan  1 00:00:00 h app: n=4\n") as s:
            s.shutdown(socket.SHUT_WR)
            assert closed(s)
        # octet counting that goes wrong cannot be resynced: that connection is closed
        with raw(r.port, frame("<13>1 2024-01-01T00:00:00Z h app - - - n=5") + b"garbage here") as s:
            assert closed(s)
        assert wait_for(lambda: len(r.records()) >= 5 and len(r.error_records()) >= 4), (r.messages(), [e["kind"] for e in r.error_records()])
        assert numbers(r.messages()) == [1, 2, 3, 4, 5]
        kinds = sorted(e["kind"] for e in r.error_records())
        assert kinds == ["parse_error", "protocol_error", "too_large", "too_large"], r.error_records()
        # no second log line of a kind within a minute
        assert r.stderr().count("larger than max_message_bytes") == 1
    finally:
        r.stop()


def test_udp_datagram_past_max_message_bytes(tmp_path):
    r = SyslogReceiver(tmp_path, "mode: udp, max_message_bytes: 100")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"<13>Jan  1 00:00:00 h app: " + b"z" * 200, ("127.0.0.1", r.port))
            s.sendto(b"<13>Jan  1 00:00:00 h app: n=7\n", ("127.0.0.1", r.port))
        assert wait_for(lambda: r.records() and r.error_records()), r.stderr()
        assert r.messages() == ["n=7"] and r.error_records()[0]["kind"] == "too_large"
    finally:
        r.stop()


def test_idle_and_surplus_connections_are_closed(tmp_path):
    r = SyslogReceiver(tmp_path, "mode: tcp, idle_timeout: 1s, max_connections: 2")
    try:
        quiet = raw(r.port, b"")
        started = time.monotonic()
        assert closed(quiet) and time.monotonic() - started < 5
        first, second = raw(r.port, frame("<13>1 2024-01-01T00:00:00Z h app - - - n=1")), raw(r.port, b"")
        time.sleep(0.3)
        third = raw(r.port, b"<13>Jan  1 00:00:00 h app: n=2\n")
        assert closed(first, 3)  # idle longest: closed for the new one
        third.shutdown(socket.SHUT_WR)
        assert closed(third)
        assert wait_for(lambda: numbers(r.messages()) == [1, 2]), r.stderr()
        second.close()
        assert "2 connections (max_connections): closed the one from" in r.stderr()
    finally:
        r.stop()


def test_datagrams_the_kernel_drops_are_counted_and_said(tmp_path):
    """A receive buffer of the kernel's least size and a sender much faster than the pipeline:
    what the kernel drops is not silent."""
    r = SyslogReceiver(tmp_path, "mode: udp, receive_buffer_bytes: 1")
    sent = 20_000
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(sent):
                s.sendto(b"<13>Jan  1 00:00:00 h app: n=%d" % i, ("127.0.0.1", r.port))
            # the kernel's count comes with the next datagram it queues: one more, once there is room
            settle(0.5)
            s.sendto(b"<13>Jan  1 00:00:00 h app: n=%d" % sent, ("127.0.0.1", r.port))
            sent += 1
        assert wait_for(lambda: len(r.records()) + r.source_counters().get("datagrams_dropped", 0) == sent), \
            (len(r.records()), r.source_counters())
        assert r.source_counters()["datagrams_dropped"] > 0
        assert "the kernel dropped" in r.stderr()
    finally:
        r.stop()


def test_config_mistakes_are_refused_at_check(tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("sources:\n  a: {type: syslog, mode: unix_datagram}\n"
                    "  b: {type: syslog, mode: udp, tls: {cert: c, key: k}, permissions: '999'}\n"
                    "sinks:\n  s: {type: syslog, inputs: [a, b], host: h, mode: udp, tls: {}}\n")
    result = run_pipeline("check", str(conf))
    assert result.returncode == 2
    assert result.stderr.decode().splitlines()[:4] == [
        f"{conf}:2: sources.a.path: mode unix_datagram needs path: (the socket file, e.g. /dev/log)",
        f"{conf}:3: sources.b.tls: TLS is for mode tcp, not udp",
        f"{conf}:3: sources.b.permissions: expected an octal mode like 0666, got '999'",
        f"{conf}:5: sinks.s.tls: TLS is for mode tcp, not udp"]
