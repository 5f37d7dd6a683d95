"""Format `syslog`: RFC 3164 (BSD) and RFC 5424 syslog lines, as rsyslog and syslog-ng write them."""

from __future__ import annotations

import re

from ..config.options import Enum, Option
from ..event import Record
from . import ParseError, Parser, time_options

# `<PRI>` is on the wire and in files written with a template that keeps it (rsyslog's
# RSYSLOG_TraditionalFileFormat has none); the stamp is RFC 3164's `Oct  9 13:55:36` (some
# senders write `Oct 9`, rsyslog can add a fraction) or the RFC 3339 one of rsyslog's default
# RSYSLOG_FileFormat. A program writing to /dev/log sends no hostname (`<133>Jun 13 16:33:35 haproxy[73411]: ...`): a tag
# (`ident[pid]`, `ident:`) right after the stamp is no host, as no hostname holds `[` or ends
# in `:`. No tag (a bare message) leaves ident and pid null. A message may hold line breaks.
_TAG = r'[^\s\[:]+(?:\[[^\]\s]*\]:?|:)(?:\s|$)'
RFC3164 = re.compile(
    r'(?:<(?P<pri>\d{1,3})>)?'
    r'(?P<time>[A-Z][a-z]{2} {1,2}\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*) '
    rf'(?:(?!{_TAG})(?P<host>\S+) )?'
    r'(?:(?P<ident>[^\s\[:]+)(?:\[(?P<pid>[^\]\s]*)\](?::\s?|\s|$)|:\s?))?(?P<message>.*)', re.DOTALL)
# a space after `=` (`eventSource= "App"`) is not RFC 5424's, but senders write it (Vector reads it)
_SD = r'(?:\[[^\s\]]+(?:\s+[^\s=\]]+= ?"(?:[^"\\]|\\.)*")*\])'
# `<PRI>VERSION ` may be left out (fluentd reads such lines with message_format: rfc5424)
RFC5424 = re.compile(
    r'(?:<(?P<pri>\d{1,3})>\d{1,2} )?(?P<time>\S+) (?P<host>\S+) (?P<ident>\S+) (?P<pid>\S+) (?P<msgid>\S+) '
    rf'(?P<sd>-|{_SD}+)(?: (?P<message>.*))?\Z', re.DOTALL)
_SD_ELEMENT = re.compile(r'\[([^\s\]]+)((?:\s+[^\s=\]]+= ?"(?:[^"\\]|\\.)*")*)\]')
_SD_PARAM = re.compile(r'([^\s=\]]+)= ?"((?:[^"\\]|\\.)*)"')
_SD_ESCAPE = re.compile(r'\\(["\\\]])')


def structured_data(text: str) -> dict[str, dict[str, str]]:
    """`[id@32473 a="1" b="x \\"y\\""][other]` -> {"id@32473": {"a": "1", "b": 'x "y"'}, "other": {}}."""
    return {m.group(1): {k: _SD_ESCAPE.sub(r"\1", v) for k, v in _SD_PARAM.findall(m.group(2))}
            for m in _SD_ELEMENT.finditer(text)}


class SyslogParser(Parser):
    """Syslog lines. RFC 3164: pri (with `<PRI>`, else absent), time, host, ident, pid, message;
    its stamp has no year: the current one, or the last one for a December line read in January;
    a line without a hostname (what programs send to /dev/log) has no `host`.
    RFC 5424: pri, time, host, ident, pid, msgid, structured_data (`{SD-ID: {param: value}}`,
    absent for `-`), message; `-` fields are null; `<PRI>1 ` may be left out with
    `message_format: rfc5424`. `message_format: auto` tells them apart by the `<PRI>1 ` that
    starts an RFC 5424 line. A message keeps its line breaks, but for one at its end."""

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
        if record["host"] is None:
            del record["host"]
        if record["message"].endswith("\n"):
            record["message"] = record["message"][:-1]
        return record

    def _rfc5424(self, text: str) -> Record:
        m = RFC5424.match(text)
        if m is None:
            raise ParseError("not an RFC 5424 syslog line")
        record: Record = {k: None if v == "-" else v for k, v in m.groupdict().items()}
        sd = record.pop("sd")
        if sd is not None:
            record["structured_data"] = structured_data(sd)
        if record["pri"] is None:
            del record["pri"]
        message = record["message"]
        if message is not None:
            if message.startswith("\ufeff"):  # RFC 5424's BOM for UTF-8
                message = message[1:]
            record["message"] = message[:-1] if message.endswith("\n") else message
        return record


PLUGIN = SyslogParser
