"""Prometheus text exposition format (0.0.4) and OpenMetrics 1.0, parsed into samples.

Shared by the prometheus source and the prometheus_exporter sink's tests; kept
free of I/O so it can parse a recorded body as well as a live scrape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|(?=\}))')
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_UNESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}
#: suffixes a sample name adds to its family's name (histogram, summary, counter, info)
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created", "_info", "_gcount", "_gsum")


class ParseError(ValueError):
    pass


@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float
    type: str = "untyped"
    #: nanoseconds since the epoch, when the exposition gave a timestamp
    time_ns: int | None = None


@dataclass
class Exposition:
    samples: list[Sample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)
    help: dict[str, str] = field(default_factory=dict)
    #: (line number, message) of each line that did not parse; the rest is kept
    errors: list[tuple[int, str]] = field(default_factory=list)


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return _UNESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), text)


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family_type(name: str, types: dict[str, str]) -> str:
    t = types.get(name)
    if t is not None:
        return t
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            t = types.get(name[: -len(suffix)])
            if t is not None:
                return t
    return "untyped"


def _parse_sample(line: str, openmetrics: bool) -> Sample:
    m = _NAME.match(line)
    if not m:
        raise ParseError("expected a metric name")
    name, pos = m.group(), m.end()
    labels: dict[str, str] = {}
    if pos < len(line) and line[pos] == "{":
        pos += 1
        while True:
            while pos < len(line) and line[pos] == " ":
                pos += 1
            if pos < len(line) and line[pos] == "}":
                pos += 1
                break
            lm = _LABEL.match(line, pos)
            if not lm:
                raise ParseError("bad label set")
            labels[lm.group(1)] = _unescape(lm.group(2))
            pos = lm.end()
    rest = line[pos:]
    if openmetrics and " # " in rest:  # an exemplar follows the value
        rest = rest.split(" # ", 1)[0]
    parts = rest.split()
    if not parts or len(parts) > 2:
        raise ParseError("expected a value and an optional timestamp")
    try:
        value = float(parts[0])
        time_ns = None
        if len(parts) == 2:
            # OpenMetrics timestamps are seconds (maybe fractional), the text format's milliseconds
            time_ns = int(float(parts[1]) * 1e9) if openmetrics else int(parts[1]) * 1_000_000
    except ValueError:
        raise ParseError(f"bad number in {rest.strip()!r}") from None
    return Sample(name, labels, value, time_ns=time_ns)


def parse(text: str, openmetrics: bool = False) -> Exposition:
    out = Exposition()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                out.types[parts[2]] = parts[3].strip() if len(parts) > 3 else "untyped"
            elif len(parts) >= 3 and parts[1] == "HELP":
                out.help[parts[2]] = _unescape(parts[3]) if len(parts) > 3 else ""
            elif parts[1:2] == ["EOF"]:
                break
            continue
        try:
            sample = _parse_sample(line, openmetrics)
        except ParseError as e:
            out.errors.append((n, f"{e}: {line[:200]!r}"))
            continue
        sample.type = _family_type(sample.name, out.types)
        out.samples.append(sample)
    return out
