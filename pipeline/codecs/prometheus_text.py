"""The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0, parsed.

Each sample: (name, labels, value, timestamp_ns or None, type, family). Types come from
`# TYPE`; histogram/summary/counter samples (`_bucket`, `_sum`, `_count`, `_total`,
`_created`) find their family by suffix. Values keep NaN and +/-Inf as floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .quote import quoted

SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created", "_gcount", "_gsum", "_info")


class ParseError(ValueError):
    pass


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float
    timestamp_ns: int | None
    type: str
    family: str


def parse_value(text: str) -> float:
    lowered = text.lower()
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    if lowered == "nan":
        return math.nan
    return float(text)


def _labels(line: str, start: int, lineno: int) -> tuple[dict[str, str], int]:
    """Labels from `{` at `start`; returns them and the index after `}`."""
    labels: dict[str, str] = {}
    i = start + 1
    n = len(line)
    while True:
        while i < n and line[i] in " ,":
            i += 1
        if i < n and line[i] == "}":
            return labels, i + 1
        eq = line.find("=", i)
        if eq < 0 or eq + 1 >= n or line[eq + 1] != '"':
            raise ParseError(f"line {lineno}: bad label in {quoted(line)}")
        name = line[i:eq].strip()
        i = eq + 2
        value = []
        while i < n and line[i] != '"':
            if line[i] == "\\" and i + 1 < n:
                nxt = line[i + 1]
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            else:
                value.append(line[i])
                i += 1
        if i >= n:
            raise ParseError(f"line {lineno}: unterminated label value in {quoted(line)}")
        labels[name] = "".join(value)
        i += 1


def _unescape_help(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\\\", "\\")


def parse(text: str, openmetrics: bool = False) -> tuple[list[Sample], dict[str, str]]:
    """Samples and the HELP text of each family. Raises ParseError on a malformed line."""
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    samples: list[Sample] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip() if len(parts) > 3 else "untyped"
            elif len(parts) >= 3 and parts[1] == "HELP":
                helps[parts[2]] = _unescape_help(parts[3]) if len(parts) > 3 else ""
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace >= 0 and (space < 0 or brace < space):
            name = line[:brace]
            labels, end = _labels(line, brace, lineno)
            rest = line[end:].split()
        else:
            name, *rest = line.split()
            labels = {}
        if "#" in rest:  # an OpenMetrics exemplar follows the value
            rest = rest[: rest.index("#")]
        if not rest or not name:
            raise ParseError(f"line {lineno}: no value in {quoted(line)}")
        try:
            value = parse_value(rest[0])
            ts = None
            if len(rest) > 1:
                # text format: milliseconds; OpenMetrics: seconds (may be fractional)
                ts = int(float(rest[1]) * 1e9) if openmetrics else int(rest[1]) * 1_000_000
        except ValueError:
            raise ParseError(f"line {lineno}: bad number in {quoted(line)}") from None
        family = name
        kind = types.get(name)
        if kind is None:
            for suffix in SUFFIXES:
                if name.endswith(suffix) and name[: -len(suffix)] in types:
                    family = name[: -len(suffix)]
                    kind = types[family]
                    break
        samples.append(Sample(name, labels, value, ts, kind or "untyped", family))
    return samples, helps
