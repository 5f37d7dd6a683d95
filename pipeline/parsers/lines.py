"""Format `lines`: each line as it is."""

from __future__ import annotations

from ..config.options import Option, Str
from ..event import Record, now_ns
from . import Parser


class LinesParser(Parser):
    """The whole line in one field, `{"message": line}`; never fails."""

    common_options = Parser.common_options[:1]
    options = (Option("message_key", Str(), "message", "the field that holds the line"),)

    def record(self, text: str) -> Record:
        return {self.conf.message_key: text}

    def parse_lines(self, lines, tag, origin):
        key, now = self.conf.message_key, now_ns()
        return [(tag, now, {key: line}) for line in lines]


PLUGIN = LinesParser
