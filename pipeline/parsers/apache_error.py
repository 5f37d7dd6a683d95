"""Format `apache_error`: Apache httpd 2.4's error log."""

from __future__ import annotations

import re

from . import time_options
from ._preset import PresetParser

# ErrorLogFormat's default: [%t] [%-m:%l] [pid %P:tid %T] %7F: %E: [client %a] %M; the file
# and the status code parts appear only on some lines, the client only for a request.
PATTERN = re.compile(
    r'\[(?P<time>[^\]]+)\] \[(?:(?P<module>[^:\]]*):)?(?P<level>[^\]]+)\] '
    r'\[pid (?P<pid>\d+)(?::tid (?P<tid>\d+))?\] '
    r'(?:(?P<source>[^\s\[]+\(\d+\)): )?(?:(?P<status>\([^)]*\)[^:]*): )?'
    r'(?:\[client (?P<client>[^\]]+)\] )?(?P<message>.*)')


class ApacheErrorParser(PresetParser):
    """Apache httpd 2.4's error log: time, module, level, pid (int), tid (int), source, status,
    client, message; the time (`Wed Oct 09 13:55:36.123456 2026`, no zone) in `timezone`."""

    PATTERN = PATTERN
    options = time_options("time", "%a %b %d %H:%M:%S.%f %Y", {"pid": "int", "tid": "int"})


PLUGIN = ApacheErrorParser
