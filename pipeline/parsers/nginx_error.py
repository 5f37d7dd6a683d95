"""Format `nginx_error`: nginx's error log."""

from __future__ import annotations

import re

from . import time_options
from ._preset import PresetParser

# ngx_log_error_core: `2026/10/09 13:55:36 [error] PID#TID: *CONNECTION message`
PATTERN = re.compile(
    r'(?P<time>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(?P<level>\w+)\] (?P<pid>\d+)#(?P<tid>\d+): '
    r'(?:\*(?P<connection>\d+) )?(?P<message>.*)')


class NginxErrorParser(PresetParser):
    """nginx's error log: time, level, pid, tid, connection (ints), message (with nginx's
    `, client: ..., request: "..."` context as written); the time (no zone) in `timezone`."""

    PATTERN = PATTERN
    options = time_options("time", "%Y/%m/%d %H:%M:%S", {"pid": "int", "tid": "int", "connection": "int"})


PLUGIN = NginxErrorParser
