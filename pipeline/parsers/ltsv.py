"""Format `ltsv`: Labeled Tab-separated Values."""

from __future__ import annotations

from ..config.options import Option, Regex, Str
from ..event import Record
from . import ParseError, Parser, time_options


class LtsvParser(Parser):
    """`label:value` pairs split by tabs (ltsv.org); a field without its label is an error.
    The `\\t`, `\\n`, `\\\\` escapes the ltsv sink writes are read back."""

    options = (
        Option("delimiter", Str(), "\t", "between fields"),
        Option("delimiter_pattern", Regex(), None, "a regex between fields, in place of delimiter (e.g. `\\s+`)"),
        Option("label_delimiter", Str(), ":", "between a label and its value"),
    ) + time_options()

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        pattern, delimiter = conf.delimiter_pattern, conf.delimiter
        self.split = pattern.split if pattern is not None else lambda text: text.split(delimiter)

    def record(self, text: str) -> Record:
        out = {}
        sep = self.conf.label_delimiter
        for field in self.split(text):
            label, found, value = field.partition(sep)
            if not found:
                raise ParseError(f"field {field[:40]!r} has no label")
            if "\\" in value:
                value = _unescape(value)
            out[label] = value
        return out


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value) and value[i + 1] in _ESCAPES:
            out.append(_ESCAPES[value[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


PLUGIN = LtsvParser
