"""Format `json`: one JSON object per line."""

from __future__ import annotations

import orjson

from ..codecs.formats import DecodeError, has_long_digits, json_loads
from ..event import Record
from . import ParseError, Parser, time_options


class JsonParser(Parser):
    """One JSON object per line (the `log` field of Docker's fluentd driver, a JSON log).
    Integers past 64 bits and invalid UTF-8 are read as stdin's json_lines reads them."""

    options = time_options()

    def record(self, text: str) -> Record:
        try:
            doc = orjson.loads(text) if not has_long_digits(text.encode()) else json_loads(text)
        except (orjson.JSONDecodeError, DecodeError) as e:
            if text.startswith("\ufeff"):  # a file's byte order mark, on its first line
                return self.record(text[1:])
            raise ParseError(f"not JSON: {e}") from None
        if type(doc) is not dict:
            raise ParseError(f"expected a JSON object, got {type(doc).__name__}")
        return doc


PLUGIN = JsonParser
