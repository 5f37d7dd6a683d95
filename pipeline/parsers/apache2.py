"""Format `apache2`: Apache httpd's `combined` access log format."""

from __future__ import annotations

import re

from . import time_options
from ._preset import PresetParser

# LogFormat "%h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\"" combined; Apache
# writes a quote in a value as \" (and bytes past ASCII as \xHH), so a quoted value is
# anything but a bare quote, with backslash escapes.
PATTERN = re.compile(
    r'(?P<remote>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]*)\] '
    r'"(?P<method>[^ "\\]*)(?: (?P<path>(?:[^"\\]|\\.)*?)(?: (?P<protocol>HTTP/[^ "]*))?)?" '
    r'(?P<status>\d{3}) (?P<size>\d+|-)'
    r'(?: "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)")?')


class Apache2Parser(PresetParser):
    """Apache httpd's `combined` access log: remote, user, time, method, path, protocol,
    status (int), size (int), referer, agent, as the `nginx` format names them; values as
    Apache wrote them (`\\"` for a quote)."""

    PATTERN = PATTERN
    options = time_options("time", "%d/%b/%Y:%H:%M:%S %z", {"status": "int", "size": "int"})


PLUGIN = Apache2Parser
