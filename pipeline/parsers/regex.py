"""Format `regex`: the named groups of a regular expression."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ..config.options import Option, Regex
from ..event import Record
from . import ParseError, Parser, time_options

#: what `records_of` gives for each line that does not match: one error, the same for all
_NO_MATCH = ParseError("does not match the pattern")


class RegexParser(Parser):
    """Fields from the named groups `(?P<name>...)` of `pattern`, matched from the line's start
    (`re.match`); groups that did not take part are null. `.` matches a line break too, so that
    `(?P<message>.*)` takes a whole multiline record (a stack trace), as fluentd's multiline
    format does; `(?-s:.)` is a `.` that does not. Checked at `check`: a pattern that does not
    compile, or has no named group, is a config error."""

    options: ClassVar[tuple[Option, ...]] = (
        Option("pattern", Regex(named=True), help="Python regular expression with named groups"),
    ) + time_options()

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        pattern = self.pattern()
        self.match = re.compile(pattern.pattern, pattern.flags | re.DOTALL).match

    def pattern(self):
        return self.conf.pattern

    def record(self, text: str) -> Record:
        m = self.match(text)
        if m is None:
            raise ParseError("does not match the pattern")
        return m.groupdict()

    def records_of(self, lines: list[str]) -> list[Any]:
        match, no_match = self.match, _NO_MATCH
        return [m.groupdict() if (m := match(line)) is not None else no_match for line in lines]


PLUGIN = RegexParser
