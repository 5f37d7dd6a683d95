"""Format `nginx`: nginx's default `combined` access log format."""

from __future__ import annotations

import re

from . import time_options
from ._preset import PresetParser

# log_format combined '$remote_addr - $remote_user [$time_local] "$request" $status
# $body_bytes_sent "$http_referer" "$http_user_agent"'; nginx writes `"` and bytes past ASCII
# in them as \x22 and \xHH, so a quoted value never holds a bare `"`. A request that is no
# `METHOD PATH PROTOCOL` (a probe's garbage, `-` for a connection closed early) leaves
# path and protocol null.
PATTERN = re.compile(
    r'(?P<remote>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]*)\] '
    r'"(?P<method>[^ "]*)(?: (?P<path>[^"]*?)(?: (?P<protocol>HTTP/[^ "]*))?)?" '
    r'(?P<status>\d{3}) (?P<size>\d+|-)(?: "(?P<referer>[^"]*)" "(?P<agent>[^"]*)")?')


class NginxParser(PresetParser):
    """nginx's `combined` access log: remote, user, time, method, path, protocol, status
    (int), size (int), referer, agent; the time read with `%d/%b/%Y:%H:%M:%S %z`. Values
    are as nginx wrote them (`\\x22` for a quote in the URL); `-` stays as it is except for
    numbers, which become null."""

    PATTERN = PATTERN
    options = time_options("time", "%d/%b/%Y:%H:%M:%S %z", {"status": "int", "size": "int"})


PLUGIN = NginxParser
