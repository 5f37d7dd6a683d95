"""Format `apache_error`: Apache httpd's error log, 2.4's and 2.2's."""

from __future__ import annotations

import re

from . import time_options
from ._preset import PresetParser

# 2.4's ErrorLogFormat default: [%t] [%-m:%l] [pid %P:tid %T] %7F: %E: [client %a] %M; the file
# and the status code parts appear only on some lines, the client only for a request. 2.2
# writes `[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] ...`: no module, pid or
# microseconds; a 2.4 ErrorLogFormat of one's own can leave the pid out too.
PATTERN = re.compile(
    r'\[(?P<time>[^\]]+)\] \[(?:(?P<module>[^:\]]*):)?(?P<level>[^\]]+)\] '
    r'(?:\[pid (?P<pid>\d+)(?::tid (?P<tid>\d+))?\] )?'
    r'(?:(?P<source>[^\s\[]+\(\d+\)): )?(?:(?P<status>\([^)]*\)[^:]*): )?'
    r'(?:\[client (?P<client>[^\]]+)\] )?(?P<message>.*)')


class ApacheErrorParser(PresetParser):
    """Apache httpd's error log: time, module, level, pid (int), tid (int), source, status,
    client, message; the time (`Wed Oct 09 13:55:36.123456 2026`, 2.2: without the
    microseconds; no zone) in `timezone`. 2.2's lines have no module, pid or tid (null)."""

    PATTERN = PATTERN
    options = time_options("time", "%a %b %d %H:%M:%S.%f %Y", {"pid": "int", "tid": "int"})


PLUGIN = ApacheErrorParser
