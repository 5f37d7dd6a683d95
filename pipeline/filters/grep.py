"""Filter `grep`: keep or drop events by the values of their fields (fluentd's filter_grep)."""

from __future__ import annotations

from typing import Any

from ..event import Batch
from ..options import ListOf, Option, Regex, Struct
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
        self.rules = [(r.key, getter(r.key), r.pattern.search, True) for r in conf.regexp] + [
            (r.key, getter(r.key), r.pattern.search, False) for r in conf.exclude]

    def process(self, batch: Batch) -> Batch:
        # rule by rule over the batch, each a comprehension: no Python call per event
        # beyond the regex's own (a top-level key is read inline, not through its getter)
        for key, get, search, wanted in self.rules:
            if "." not in key:
                batch = [e for e in batch if ((v := e[2].get(key)) is not None and search(
                    v if type(v) is str else _text(v)) is not None) is wanted]
            else:
                batch = [e for e in batch if ((v := get(e[2])) is not None and search(
                    v if type(v) is str else _text(v)) is not None) is wanted]
        return batch


PLUGIN = GrepFilter
