"""Filter `grep`: keep or drop events by the values of their fields (fluentd's filter_grep)."""

from __future__ import annotations

from typing import Any

from ..config.options import ListOf, Option, Regex, Struct
from ..config.templates import KeyPath, getter
from ..event import Batch
from ..plugin import Filter

_RULE = Struct(
    Option("key", KeyPath(), help="the field: a name, a.b or $.a.b for a nested one"),
    Option("pattern", Regex(), help="a Python regular expression, searched anywhere in the value"),
    name="{key, pattern}",
)


#: distinct values a key's decisions are remembered for; a key with more (a message, an id)
#: is matched by its regexes each time instead
MEMO_SIZE = 4096


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bool):  # as fluentd's Ruby prints them
        return "true" if value else "false"
    return str(value)


class _Key:
    """The rules on one key, decided together: whether an event with a given value there
    stays. Decisions are remembered by value (keys of one field repeat: a level, a method,
    a status), a str by itself and any other value by (type, value), as 1, 1.0 and True are
    equal keys of a dict but not the same text."""

    def __init__(self, key: str, wanted: list, unwanted: list):
        self.get = getter(key)
        # a top-level field (`level` or `$.level`) is read inline, not through its getter
        name = key[2:] if key.startswith("$.") else key
        self.field = None if "." in name else name
        self.wanted, self.unwanted = [p.search for p in wanted], [p.search for p in unwanted]
        # a missing key (or null) matches no rule: it stays unless a regexp rule needs it
        self.memo: dict | None = _Memo(self.decide, {(type(None), None): not wanted})

    def decide(self, value: Any) -> bool:
        text = _text(value)
        return (all(search(text) is not None for search in self.wanted)
                and not any(search(text) is not None for search in self.unwanted))

    def keeps(self, batch: Batch) -> Batch:
        field, memo = self.field, self.memo
        if memo is None or len(memo) > MEMO_SIZE:
            self.memo = None
            return self.matched(batch)
        try:
            if field is not None:
                return [e for e in batch if memo[v if type(v := e[2].get(field)) is str else (type(v), v)]]
            get = self.get
            return [e for e in batch if memo[v if type(v := get(e[2])) is str else (type(v), v)]]
        except TypeError:  # an unhashable value (a list, a map): this batch without the memo
            return self.matched(batch)

    def matched(self, batch: Batch) -> Batch:
        """Without the memo: rule by rule, a comprehension each, the regex's the only call."""
        field, get = self.field, self.get
        for search, wanted in [(s, True) for s in self.wanted] + [(s, False) for s in self.unwanted]:
            if field is not None:
                batch = [e for e in batch if ((v := e[2].get(field)) is not None and search(
                    v if type(v) is str else _text(v)) is not None) is wanted]
            else:
                batch = [e for e in batch if ((v := get(e[2])) is not None and search(
                    v if type(v) is str else _text(v)) is not None) is wanted]
        return batch


class _Memo(dict):
    def __init__(self, decide, known: dict):
        super().__init__(known)
        self.decide = decide

    def __missing__(self, key: Any) -> bool:
        keep = self[key] = self.decide(key if type(key) is str else key[1])
        return keep


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
        keys = dict.fromkeys(r.key for r in [*conf.regexp, *conf.exclude])
        self.keys = [_Key(k, [r.pattern for r in conf.regexp if r.key == k],
                          [r.pattern for r in conf.exclude if r.key == k]) for k in keys]

    @classmethod
    def fields(cls, conf, upstream, check):
        return upstream  # the events it keeps pass whole

    def process(self, batch: Batch) -> Batch:
        # key by key over the batch, each pass a comprehension over fewer events
        for key in self.keys:
            batch = key.keeps(batch)
        return batch


PLUGIN = GrepFilter
