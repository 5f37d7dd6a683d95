"""Format `logfmt`: `key=value key2="quoted value"`, as Heroku and Go's logfmt write."""

from __future__ import annotations

import re

from ..event import Record
from . import ParseError, Parser, time_options

_PAIR = re.compile(r'\s*([^\s="]+)(?:=("(?:[^"\\]|\\.)*"|[^\s"]*))?')
_ESCAPE = re.compile(r'\\(.)')


class LogfmtParser(Parser):
    """`key=value` pairs split by spaces; a quoted value keeps its spaces (`\\"` and `\\\\`
    escapes), a key without `=` is true, `key=` is the empty string."""

    options = time_options()

    def record(self, text: str) -> Record:
        out: Record = {}
        pos, end = 0, len(text.rstrip())
        match = _PAIR.match
        while pos < end:
            m = match(text, pos)
            if m is None or m.end() == pos:
                raise ParseError(f"not key=value at column {pos + 1}: {text[pos:pos + 40]!r}")
            value = m.group(2)
            if value is None:
                out[m.group(1)] = True
            elif value.startswith('"'):
                out[m.group(1)] = _ESCAPE.sub(r"\1", value[1:-1])
            else:
                out[m.group(1)] = value
            pos = m.end()
        return out


PLUGIN = LogfmtParser
