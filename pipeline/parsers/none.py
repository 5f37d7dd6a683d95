"""Format `none`: fluentd's name for `lines`."""

from __future__ import annotations

from .lines import LinesParser


class NoneParser(LinesParser):
    """The whole line in one field, `{"message": line}` (fluentd's `none`; the same as `lines`)."""


PLUGIN = NoneParser
