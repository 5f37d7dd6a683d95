"""Format `csv`: comma-separated values, quoted as RFC 4180 says."""

from __future__ import annotations

import csv

from ..config.options import Invalid, ListOf, Option, Str
from ..event import Record
from . import ParseError, Parser, time_options


class _Char(Str):
    name = "character"

    def convert(self, value, path, errors, node):
        text = super().convert(value, path, errors, node)
        if len(text) != 1:
            raise Invalid(f"expected one character, got {text!r}")
        return text


class CsvParser(Parser):
    """The fields of one line named by `keys`, in order; `"a ""quoted"", value"` as RFC 4180
    quotes. A line with another number of fields is an error. A quoted value cannot hold a line
    break here: each line is read on its own."""

    options = (
        Option("keys", ListOf(Str()), help="the names of the fields, in order"),
        Option("delimiter", _Char(), ",", "one character between fields"),
    ) + time_options()

    def record(self, text: str) -> Record:
        try:
            row = next(csv.reader((text,), delimiter=self.conf.delimiter, strict=True))
        except (csv.Error, StopIteration) as e:
            raise ParseError(f"not CSV: {e}") from None
        keys = self.conf.keys
        if len(row) != len(keys):
            raise ParseError(f"expected {len(keys)} fields ({', '.join(keys)}), got {len(row)}")
        return dict(zip(keys, row, strict=True))


PLUGIN = CsvParser
