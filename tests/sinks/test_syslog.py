"""Sink syslog into a real rsyslogd started here (imtcp, imudp, TLS), which writes what it
received to a file with its own reading of every header field; numbered messages counted,
also through restarts of rsyslogd in the middle of a stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT, free_port, run_pipeline
from syslog_peers import Rsyslog, numbers, wait_lines

# rsyslog's own reading of each message: what a receiver makes of what the sink sent
FIELDS = ('template(name="fields" type="string" string="%syslogfacility-text% %syslogseverity-text% '
          '%hostname% %app-name% %procid% %msgid% %structured-data% msg:%msg%\\n")\n')


def receiver(tmp, protocol: str = "tcp", tls_certs=None) -> tuple[Rsyslog, int, object]:
    port = free_port()
    out = tmp / "received.log"
    module = f'module(load="im{protocol}"'
    if tls_certs is not None:
        module += ' StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="anon"'
    # UDP: a receive buffer that holds a burst of the sink's (the kernel's default holds ~250)
    extra = ' rcvbufSize="4m"' if protocol == "udp" else ""
    body = (f'{module})\ninput(type="im{protocol}" address="127.0.0.1" port="{port}"{extra})\n{FIELDS}'
            f'action(type="omfile" file="{out}" template="fields")\n')
    rsyslog = Rsyslog(tmp, body, tls_certs=tls_certs)
    rsyslog.start(port if protocol == "tcp" else None)
    if protocol == "udp":
        time.sleep(0.5)  # nothing tells when a UDP port listens
    return rsyslog, port, out


def sender_conf(tmp, sink: str) -> str:
    conf = tmp / "send.yaml"
    conf.write_text("shutdown_timeout: 30s\nsources:\n  in: {type: stdin, tag: app.web}\n"
                    f"sinks:\n  out: {{type: syslog, inputs: [in], host: 127.0.0.1, retry_max_interval: 500ms, {sink}}}\n")
    return str(conf)


def send_to_rsyslog(tmp, sink: str, data: bytes, count: int, protocol: str = "tcp") -> tuple[list[str], str]:
    """`data` (JSON lines) through `stdin -> syslog sink` (its options `sink`) into rsyslogd:
    the lines of rsyslog's file once it holds `count`, and what the pipeline logged."""
    rsyslog, port, out = receiver(tmp, protocol)
    try:
        result = run_pipeline("run", "--once", sender_conf(tmp, f"port: {port}, {sink}"), input=data)
        assert result.returncode == 0, result.stderr.decode()
        return wait_lines(out, lambda lines: len(lines) >= count), result.stderr.decode()
    finally:
        rsyslog.stop()


def records(n: int, start: int = 0) -> bytes:
    return b"".join(json.dumps({"message": f"n={i} café", "severity": "err" if i % 2 else "warning",
                                "facility": "local4", "ident": "web", "pid": 1234, "msgid": "REQ",
                                "host": "origin-host",
                                "structured_data": {"req@32473": {"id": str(i), "q": 'a "b" ]'}}}).encode() + b"\n"
                    for i in range(start, start + n))


@pytest.mark.parametrize("sink, protocol", [
    ("mode: tcp", "tcp"), ("mode: tcp, framing: lf", "tcp"), ("mode: udp", "udp"),
    ("mode: tcp, format: rfc3164", "tcp")], ids=["tcp-octet-counted", "tcp-lf", "udp", "tcp-rfc3164"])
def test_numbered_messages_into_rsyslog(tmp_path, sink, protocol):
    lines, _ = send_to_rsyslog(tmp_path, sink, records(300), 300, protocol)
    assert numbers(lines) == list(range(300))
    fields = lines[1].split(" ", 7)
    if "rfc3164" in sink:  # no MSGID nor STRUCTURED-DATA in RFC 3164
        assert fields[:5] == ["local4", "err", "origin-host", "web", "1234"]
        assert lines[1].endswith("msg: n=1 café")
    else:
        assert fields == ["local4", "err", "origin-host", "web", "1234", "REQ",
                          '[req@32473', 'id="1" q="a \\"b\\" \\]"] msg:n=1 café']
    assert lines[0].startswith("local4 warning ")


def test_header_defaults_and_a_record_without_a_message(tmp_path):
    data = b'{"n": 1, "severity": "bogus"}\n{"message": "two\\nlines", "ident": "x y"}\n'
    lines, stderr = send_to_rsyslog(tmp_path, "facility: daemon, severity: notice, hostname: h1", data, 2)
    # a severity it does not know: the default, said once; the tag where there is no ident
    assert lines[0] == 'daemon notice h1 app.web - - - msg:{"n":1,"severity":"bogus"}'
    assert "field 'severity' holds 'bogus'" in stderr
    # octet counting keeps the line break inside the message (rsyslog writes it as #012);
    # a space cannot be in an APP-NAME
    assert lines[1] == "daemon notice h1 x_y - - - msg:two#012lines"


def test_rfc3164_tags_keep_to_what_a_reader_can_tell_apart(tmp_path):
    data = b'{"message": "m: [x]", "ident": "a:b[1]", "pid": "7]"}\n'
    lines, _ = send_to_rsyslog(tmp_path, "format: rfc3164, hostname: h1", data, 1)
    assert lines[0].startswith("user info h1 a_b_1_ 7_ - - msg:")
    assert lines[0].endswith("m: [x]")


def test_long_messages_are_cut_at_max_message_bytes(tmp_path):
    data = json.dumps({"message": "é" * 200}).encode() + b'\n{"message": "short"}\n'
    lines, _ = send_to_rsyslog(tmp_path, "max_message_bytes: 120", data, 2)
    cut = lines[0].split("msg:")[1]
    assert set(cut) == {"é"} and 10 < len(cut) < 60  # cut whole characters, within 120 bytes
    assert lines[1].endswith("msg:short")


def test_tls_into_rsyslog(tmp_path, certs):
    rsyslog, port, out = receiver(tmp_path, tls_certs=certs)
    try:
        conf = sender_conf(tmp_path, f"port: {port}, tls: {{ca: {certs}/cert.pem, server_name: localhost}}")
        result = run_pipeline("run", "--once", conf, input=records(300))
        assert result.returncode == 0, result.stderr.decode()
        assert numbers(wait_lines(out, lambda lines: len(lines) >= 300)) == list(range(300))
        # a sink that does not trust the certificate sends nothing
        bad = sender_conf(tmp_path, f"port: {port}, tls: {{server_name: localhost}}, retry_timeout: 1s")
        result = run_pipeline("run", "--once", bad, input=records(1, 1000))
        assert result.returncode == 1 and b"CERTIFICATE_VERIFY_FAILED" in result.stderr, result.stderr.decode()
        assert 1000 not in numbers(out.read_text().splitlines())
    finally:
        rsyslog.stop()


def test_nothing_lost_across_rsyslog_restarts(tmp_path):
    """A stream of numbered messages while rsyslogd is restarted three times: every number
    arrives (some may twice: at-least-once)."""
    rsyslog, port, out = receiver(tmp_path)
    conf = sender_conf(tmp_path, f"port: {port}")
    sender = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--once", conf], stdin=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        total = 0
        for _ in range(3):
            for _ in range(20):  # 2,000 messages over about a second, then a restart
                sender.stdin.write(records(100, total))
                sender.stdin.flush()
                total += 100
                time.sleep(0.05)
            rsyslog.stop()
            sender.stdin.write(records(100, total))  # while it is down
            sender.stdin.flush()
            total += 100
            time.sleep(0.3)
            rsyslog.start(port)
        sender.stdin.close()
        assert sender.wait(60) == 0, sender.stderr.read().decode()
        got = numbers(wait_lines(out, lambda lines: set(numbers(lines)) >= set(range(total)), 30))
        assert set(got) == set(range(total))
        assert len(got) - total < total // 4  # what is sent again is the little the server may not have read
    finally:
        if sender.poll() is None:
            sender.kill()
        rsyslog.stop()


@pytest.mark.parametrize("more", [True, False], ids=["with-the-next-write", "at-shutdown"])
def test_what_a_killed_rsyslog_had_not_read_is_sent_again(tmp_path, more):
    """rsyslogd stopped (SIGSTOP) takes no more from its socket while its kernel still
    acknowledges what comes; killed then, the connection is reset with those messages unread:
    they are sent again once it is back, ahead of the next write, or at shutdown if none comes."""
    rsyslog, port, out = receiver(tmp_path)
    conf = sender_conf(tmp_path, f"port: {port}")
    sender = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--once", conf], stdin=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        sender.stdin.write(records(100))
        sender.stdin.flush()
        wait_lines(out, lambda lines: len(lines) >= 100)
        rsyslog.proc.send_signal(signal.SIGSTOP)
        for start in range(100, 300, 50):  # taken by its kernel, never read
            sender.stdin.write(records(50, start))
            sender.stdin.flush()
            time.sleep(0.2)
        rsyslog.proc.kill()
        rsyslog.proc.wait()
        rsyslog.start(port)
        total = 400 if more else 300
        if more:
            sender.stdin.write(records(100, 300))
        sender.stdin.close()
        assert sender.wait(60) == 0, sender.stderr.read().decode()
        got = numbers(wait_lines(out, lambda lines: set(numbers(lines)) >= set(range(total)), 30))
        assert set(got) == set(range(total))
        assert "sending again the last" in sender.stderr.read().decode()
    finally:
        if sender.poll() is None:
            sender.kill()
        rsyslog.stop()
