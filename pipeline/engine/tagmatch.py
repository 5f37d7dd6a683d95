"""fluentd's tag patterns, with fluentd's semantics (lib/fluent/match.rb).

`*` matches one tag part (`a.*` matches `a.b`, not `a.b.c`), `**` zero or more
parts (`a.**` matches `a`, `a.b` and `a.b.c`), `{x,y}` either alternative,
`/regex/` a regular expression; several patterns separated by spaces match
if any does.
"""

from __future__ import annotations

import re
from collections.abc import Callable


def _glob_regex(pat: str) -> str:
    stack: list[list[str]] = []
    regex = [""]
    escape = dot = False
    i = 0
    while i < len(pat):
        c = pat[i]
        if escape:
            regex[-1] += re.escape(c)
            escape = False
            i += 1
            continue
        if pat[i:i + 2] == "**":
            if dot:
                regex[-1] += r"(?![^\.])"
                dot = False
            if pat[i + 2:i + 3] == ".":
                regex[-1] += r"(?:.*\.|\A)"
                i += 3
            else:
                regex[-1] += ".*"
                i += 2
            continue
        if dot:
            regex[-1] += r"\."
            dot = False
        if c == "\\":
            escape = True
        elif c == ".":
            dot = True
        elif c == "*":
            regex[-1] += r"[^\.]*"
        elif c == "{":
            stack.append([])
            regex.append("")
        elif c == "}" and stack:
            stack[-1].append(regex.pop())
            regex[-1] += "(?:" + "|".join(stack.pop()) + ")"
        elif c == "," and stack:
            stack[-1].append(regex.pop())
            regex.append("")
        elif c.isalnum() or c == "_":
            regex[-1] += c
        else:
            regex[-1] += "\\" + c
        i += 1
    if dot:
        regex[-1] += r"\."
    while stack:
        stack[-1].append(regex.pop())
        regex[-1] += "(?:" + "|".join(stack.pop()) + ")"
    return regex[-1]


def compile_pattern(pat: str) -> re.Pattern[str]:
    if len(pat) > 1 and pat.startswith("/") and pat.endswith("/"):
        return re.compile(pat[1:-1])
    return re.compile(r"\A" + _glob_regex(pat) + r"\Z")


def matcher(patterns: str | list[str] | None) -> Callable[[str], bool] | None:
    """A cached predicate over tags, or None when everything matches."""
    if patterns is None:
        return None
    if isinstance(patterns, str):
        patterns = patterns.split()
    compiled = [compile_pattern(p) for p in patterns]
    cache: dict[str, bool] = {}

    def match(tag: str) -> bool:
        hit = cache.get(tag)
        if hit is None:
            hit = any(r.match(tag) for r in compiled)
            if len(cache) < 10000:
                cache[tag] = hit
        return hit

    return match
