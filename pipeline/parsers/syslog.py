"""Format `syslog`: RFC 3164 (BSD) and RFC 5424 syslog lines, as rsyslog and syslog-ng write them."""

from __future__ import annotations

import re

from ..config.options import Enum, Option
from ..event import Record
from . import ParseError, Parser, time_options

# `<PRI>` is on the wire and in files written with a template that keeps it (rsyslog's
# RSYSLOG_TraditionalFileFormat has none); the stamp is RFC 3164's `Oct  9 13:55:36` or the
# RFC 3339 one of rsyslog's default RSYSLOG_FileFormat. No `tag: ` (a bare message) leaves
# ident and pid null.
RFC3164 = re.compile(
    r'(?:<(?P<pri>\d{1,3})>)?'
    r'(?P<time>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*) '
    r'(?P<host>\S+) (?:(?P<ident>[^\s\[:]+)(?:\[(?P<pid>[^\]]*)\])?: ?)?(?P<message>.*)')
_SD = r'(?:\[[^\s\]]+(?:\s+[^\s=\]]+="(?:[^"\\]|\\.)*")*\])'
RFC5424 = re.compile(
    r'<(?P<pri>\d{1,3})>1 (?P<time>\S+) (?P<host>\S+) (?P<ident>\S+) (?P<pid>\S+) (?P<msgid>\S+) '
    rf'(?P<sd>-|{_SD}+)(?: (?P<message>.*))?')
_SD_ELEMENT = re.compile(r'\[([^\s\]]+)((?:\s+[^\s=\]]+="(?:[^"\\]|\\.)*")*)\]')
_SD_PARAM = re.compile(r'([^\s=\]]+)="((?:[^"\\]|\\.)*)"')
_SD_ESCAPE = re.compile(r'\\(["\\\]])')


def structured_data(text: str) -> dict[str, dict[str, str]]:
    """`[id@32473 a="1" b="x \\"y\\""][other]` -> {"id@32473": {"a": "1", "b": 'x "y"'}, "other": {}}."""
    return {m.group(1): {k: _SD_ESCAPE.sub(r"\1", v) for k, v in _SD_PARAM.findall(m.group(2))}
            for m in _SD_ELEMENT.finditer(text)}


class SyslogParser(Parser):
    """Syslog lines. RFC 3164: pri (with `<PRI>`, else absent), time, host, ident, pid, message;
    its stamp has no year: the current one, or the last one for a December line read in January.
    RFC 5424: pri, time, host, ident, pid, msgid, structured_data (`{SD-ID: {param: value}}`,
    absent for `-`), message; `-` fields are null. `message_format: auto` tells them apart by
    the `<PRI>1 ` that starts an RFC 5424 line."""

    options = (
        Option("message_format", Enum("auto", "rfc3164", "rfc5424"), "auto", "which syslog format the lines are in"),
    ) + time_options("time", "syslog", {"pri": "int"})

    def record(self, text: str) -> Record:
        fmt = self.conf.message_format
        if fmt == "rfc5424" or (fmt == "auto" and text.startswith("<") and ">1 " in text[:7]):
            return self._rfc5424(text)
        m = RFC3164.match(text)
        if m is None:
            raise ParseError("not an RFC 3164 syslog line")
        record = m.groupdict()
        if record["pri"] is None:
            del record["pri"]
        return record

    def _rfc5424(self, text: str) -> Record:
        m = RFC5424.match(text)
        if m is None:
            raise ParseError("not an RFC 5424 syslog line")
        record: Record = {k: None if v == "-" else v for k, v in m.groupdict().items()}
        sd = record.pop("sd")
        if sd is not None:
            record["structured_data"] = structured_data(sd)
        message = record["message"]
        if message is not None and message.startswith("\ufeff"):  # RFC 5424's BOM for UTF-8
            record["message"] = message[1:]
        return record


PLUGIN = SyslogParser
