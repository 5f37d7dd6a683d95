"""Filter `parse`: parse one field of each record with a format."""

from __future__ import annotations

from ..config.options import Bool, Option, Str
from ..event import Batch
from ..parsers import Format, ParseError, build
from ..plugin import Filter


class ParseFilter(Filter):
    """Parse the text in `field` (the `log` of Docker's fluentd driver, a `message`) with
    `format` (a name, or a map of the format's options as a source takes them). The parsed
    fields replace the record, or with `keep_original` join it (`remove_field` drops the
    text). A time the format reads becomes the event's time.

    A record without the field, or whose field does not parse, goes where the format's
    `on_error` says: error (to _errors, the record dropped), keep (the record passed on as it
    is, with `parse_error`), drop; each counted."""

    options = (
        Option("field", Str(), help="the field holding the text to parse"),
        Option("format", Format(), help="a format name (nginx, json, ...) or a map with type: and its options"),
        Option("keep_original", Bool(), False, "keep the record's other fields beside the parsed ones"),
        Option("remove_field", Bool(), False, "with keep_original: drop the parsed field"),
        Option("prefix", Str(), "", "put before each parsed field's name"),
    )

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.parser = build(conf.format, ctx)

    def process(self, batch: Batch) -> Batch:
        conf = self.conf
        field, keep, remove, prefix = conf.field, conf.keep_original, conf.remove_field, conf.prefix
        parse = self.parser.parse
        out: Batch = []
        for tag, t, record in batch:
            text = record.get(field)
            try:
                if not isinstance(text, str):
                    raise ParseError(f"no text field {field!r}" if text is None
                                     else f"field {field!r} is {type(text).__name__}, not text")
                parsed_t, parsed = parse(text)
            except ParseError as e:
                if self.parser.reject(text if isinstance(text, str) else repr(record)[:1000], str(e),
                                      f"field {field!r} of {tag!r}"):
                    out.append((tag, t, {**record, "parse_error": str(e)}))
                continue
            if prefix:
                parsed = {prefix + k: v for k, v in parsed.items()}
            if keep:
                merged = dict(record)
                if remove:
                    del merged[field]
                merged.update(parsed)
                parsed = merged
            out.append((tag, t if parsed_t is None else parsed_t, parsed))
        return out


PLUGIN = ParseFilter
