"""Filter `grep`: keep or drop events by the values of their fields (fluentd's filter_grep)."""

from __future__ import annotations

from typing import Any

from ..event import Batch
from ..options import ListOf, Option, Struct
from ..parsers import Regex
from ..plugin import Filter
from ._paths import KeyPath, getter

_RULE = Struct(
    Option("key", KeyPath(), help="the field: a name, a.b or $.a.b for a nested one"),
    Option("pattern", Regex(), help="a Python regular expression, searched anywhere in the value"),
    name="{key, pattern}",
)


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bool):  # as fluentd's Ruby prints them
        return "true" if value else "false"
    return str(value)


class GrepFilter(Filter):
    """Keep the events whose fields match every `regexp` rule and none of the `exclude` rules;
    a rule's pattern is searched in the field's value (a number is matched as its text). A
    missing field matches no rule: a `regexp` rule on it drops the event, an `exclude` rule
    on it does not."""

    options = (
        Option("regexp", ListOf(_RULE), [], "rules that must all match: [{key, pattern}]"),
        Option("exclude", ListOf(_RULE), [], "rules of which any match drops the event"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.regexp = [(getter(r.key), r.pattern.search) for r in conf.regexp]
        self.exclude = [(getter(r.key), r.pattern.search) for r in conf.exclude]

    def keep(self, record: dict) -> bool:
        for get, search in self.regexp:
            value = get(record)
            if value is None or search(_text(value)) is None:
                return False
        for get, search in self.exclude:
            value = get(record)
            if value is not None and search(_text(value)) is not None:
                return False
        return True

    def process(self, batch: Batch) -> Batch:
        if len(self.regexp) == 1 and not self.exclude:  # the usual rule, without a call per event
            (get, search), = self.regexp
            return [e for e in batch if (v := get(e[2])) is not None
                    and search(v if type(v) is str else _text(v)) is not None]
        keep = self.keep
        return [event for event in batch if keep(event[2])]


PLUGIN = GrepFilter
