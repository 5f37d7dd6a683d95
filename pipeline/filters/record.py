"""Filter `record`: set, remove and keep fields (fluentd's record_transformer, without code)."""

from __future__ import annotations

import socket
from typing import Any

from ..config.fields import Path, matches
from ..config.options import ListOf, MapOf, Option, Str
from ..config.templates import PLACEHOLDER, RECORD, Template, compile_value
from ..event import Batch
from ..plugin import Filter


def reads_record(value: Any) -> bool:
    return isinstance(value, str) and "${record." in value


def _reads(value: Any) -> str | None:
    """What a set value depends on: "record", "tag", or nothing (None: a constant)."""
    if reads_record(value):
        return "record"
    return "tag" if isinstance(value, str) and "${tag" in value else None


def _field_of(value: str) -> str | None:
    """The top-level field a value is a copy of (`${record.status}` alone), else None."""
    m = PLACEHOLDER.fullmatch(value)
    field = m and RECORD.fullmatch(m.group(1))
    return field.group(1) if field and "." not in field.group(1) else None


class RecordFilter(Filter):
    """Change each record's fields: `keep` only the listed ones, `remove` some, then `set`
    others, whose text may hold placeholders: ${hostname} (this machine's name), ${tag},
    ${tag_parts[N]} (N from 0, -1 the last), ${record.FIELD} (`a.b` for a nested field; alone
    in a value it keeps its type). Placeholders read the record as it came in. An unknown
    placeholder is a config error."""

    options = (
        Option("set", MapOf(Template()), {}, "field -> value; text may hold placeholders"),
        Option("remove", ListOf(Str()), [], "top-level fields to remove"),
        Option("keep", ListOf(Str()), [], "keep only these top-level fields (and those set)"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        hostname = socket.gethostname()
        values = {k: compile_value(v, hostname) for k, v in conf.set.items()}
        reads = {k: _reads(v) for k, v in conf.set.items()}
        # per event only what the record decides: a top-level field copied as it is (read
        # inline), or any other value (its function); the rest is one dict merged per event
        fields = {k: _field_of(conf.set[k]) for k in values if reads[k] == "record"}
        self.copies = [(k, field) for k, field in fields.items() if field is not None]
        self.computed = [(k, values[k]) for k, field in fields.items() if field is None]
        self.by_tag = [(k, f) for k, f in values.items() if reads[k] == "tag"]
        self.constants = {k: f("", {}) for k, f in values.items() if reads[k] is None}
        # what `remove` takes that `set` does not put back: removed after the merge
        self.removed = [k for k in conf.remove if k not in conf.set]
        self.keep = conf.keep
        # the constants and the values that only a tag decides, merged once per tag
        self.tag_values: dict[str, dict] = {}

    @classmethod
    def fields(cls, conf, upstream, check):
        if upstream is None:
            return None
        keep, remove, given = conf.keep, conf.remove, conf.set

        def kept(p: Path) -> list[Path]:
            # `keep` may name one of a pattern's keys (`workers.0.rss` of `workers.*.rss`)
            names = [n for n in keep if matches(n, p[0])] if keep else [p[0]]
            return [(n, *p[1:]) for n in names if n not in given and n not in remove]
        out = upstream.mapped(kept)
        items: list = [(p, out.kind(p)) for p in out.paths]
        for key, value in given.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                items.append(((key,), None))
            elif isinstance(value, str) and (m := PLACEHOLDER.fullmatch(value)) and (f := RECORD.fullmatch(m[1])):
                # a copy of a field keeps its value, so its kind
                at = tuple(f[1].split("."))
                items += [((key, *p[len(at):]), upstream.kind(p)) for p in upstream.paths if p[:len(at)] == at]
        return upstream.like(items)

    def _tag_values(self, tag: str) -> dict:
        if len(self.tag_values) > 10000:  # tags from `*` paths can be many: bounded
            self.tag_values.clear()
        values = self.tag_values[tag] = self.constants | {k: value_of(tag, {}) for k, value_of in self.by_tag}
        return values

    def process(self, batch: Batch) -> Batch:
        tag_values, made, keep = self.tag_values, self._tag_values, self.keep
        removed, copies, computed = self.removed, self.copies, self.computed
        # `r | values` copies the record whole (a block copy) and merges the rest in C
        if not (keep or removed or copies or computed):
            return [(tag, t, r | (v if (v := tag_values.get(tag)) is not None else made(tag)))
                    for tag, t, r in batch]
        out: Batch = []
        append = out.append
        for tag, t, record in batch:
            if (values := tag_values.get(tag)) is None:
                values = made(tag)
            new = {k: record[k] for k in keep if k in record} | values if keep else record | values
            for k in removed:
                new.pop(k, None)
            for k, field in copies:
                new[k] = record.get(field)
            for k, value_of in computed:
                new[k] = value_of(tag, record)
            append((tag, t, new))
        return out


PLUGIN = RecordFilter
