"""What the preset formats share: a regex we maintain, tested against the real program's output."""

from __future__ import annotations

import re
from typing import ClassVar

from .regex import RegexParser


class PresetParser(RegexParser):
    """A regex format whose pattern is ours, not an option."""

    PATTERN: ClassVar[re.Pattern[str]]

    def pattern(self):
        return self.PATTERN
