"""`pipeline plot FILE.jsonl --field F --series S --out chart.svg`: the dashboard's chart of
a JSON lines file (what the file sink wrote), as an SVG file written here, no library.

Times come from `--time-field` (the file sink's `time_key`): epoch seconds or RFC 3339.
Units are the dashboard's (pipeline/config/dashboard.py), guessed from the field's name unless
`--unit` says. PNG is not offered: none of the pipeline's dependencies can draw one.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import orjson

from ..event import get_path
from ..metrics.rates import parse_rfc3339_ns

WIDTH, HEIGHT = 960, 320
LEFT, RIGHT, TOP, BOTTOM = 80, 16, 36, 26
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#ad494a", "#637939", "#e7969c")
BYTES = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def scale_of(ref: float, unit: str) -> tuple[float, str]:
    """(divisor, suffix) for values around `ref`: what dashboard.js's scaleOf gives."""
    a = abs(ref)
    if unit in ("bytes", "bytes_per_second"):
        k = 0
        while k < len(BYTES) - 1 and a >= 1024 ** (k + 1):
            k += 1
        return 1024.0 ** k, f" {BYTES[k]}" + ("/s" if unit == "bytes_per_second" else "")
    if unit == "percent":
        return 1.0, " %"
    if unit == "seconds":
        if 0 < a < 1e-3:
            return 1e-6, " µs"
        return (1e-3, " ms") if 0 < a < 1 else (1.0, " s")
    per = "/s" if unit == "per_second" else ""
    for d, s in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= d:
            return d, f" {s}{per}"
    return 1.0, f" {per}" if per else ""


def _decimals(x: float) -> int:
    x = abs(x)
    return 0 if x >= 100 else 1 if x >= 10 else 2


def fmt(v: float, unit: str, ref: float | None = None) -> str:
    d, suffix = scale_of(v if ref is None else ref, unit)
    x = v / d
    text = f"{x:.{_decimals(x if ref is None else ref / d)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return ("0" if text in ("-0", "") else text) + suffix


def _nice(x: float) -> float:
    p = 10 ** math.floor(math.log10(x))
    f = x / p
    return (1 if f <= 1 else 2 if f <= 2 else 5 if f <= 5 else 10) * p


def y_ticks(lo: float, hi: float, unit: str) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    d, _ = scale_of(max(abs(lo), abs(hi)), unit)
    step = _nice((hi - lo) / d / 4) * d
    bottom, top = math.floor(lo / step) * step, math.ceil(hi / step) * step
    return [bottom + i * step for i in range(round((top - bottom) / step) + 1)]


@dataclass
class Read:
    series: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    bad_lines: int = 0
    no_time: int = 0
    no_value: int = 0


def _time(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        ns = parse_rfc3339_ns(value)
        return None if ns is None else ns / 1e9
    return None


def read(path: Path, value_field: str, series_field: str | None, time_field: str) -> Read:
    out = Read()
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                out.bad_lines += 1
                continue
            v = get_path(record, value_field)
            if type(v) is not int and type(v) is not float:
                out.no_value += 1
                continue
            t = _time(get_path(record, time_field))
            if t is None:
                out.no_time += 1
                continue
            name = value_field if series_field is None else str(get_path(record, series_field))
            times, values = out.series.setdefault(name, ([], []))
            times.append(t)
            values.append(float(v))
    for times, values in out.series.values():  # a file of several writers need not be in order
        pairs = sorted(zip(times, values))
        times[:], values[:] = [p[0] for p in pairs], [p[1] for p in pairs]
    return out


def _clock(t: float, step: float, span: float) -> str:
    form = "%m-%d %H:%M" if span > 86400 else "%H:%M" if step >= 60 else "%H:%M:%S"
    return time.strftime(form, time.localtime(t))


def svg(title: str, unit: str, series: dict[str, tuple[list[float], list[float]]]) -> str:
    names = sorted(series)
    legend_rows = (len(names) + 3) // 4
    height = HEIGHT + 18 * legend_rows
    all_t = [t for n in names for t in series[n][0]]
    all_v = [v for n in names for v in series[n][1]]
    t0, t1 = (min(all_t), max(all_t)) if all_t else (0.0, 1.0)
    if t1 <= t0:
        t1 = t0 + 1
    ticks = y_ticks(min(0.0, min(all_v, default=0.0)), max(all_v, default=1.0), unit)
    y0, y1 = ticks[0], ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return TOP + (1 - (v - y0) / (y1 - y0)) * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>',
           f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>']
    for v in ticks:
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>')
        out.append(f'<text class="ytick" x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#555">'
                   f'{escape(fmt(v, unit, ticks[-1] or ticks[0]))}</text>')
    span = t1 - t0
    step = next((s for s in TIME_STEPS if span / s <= 8), 86400 * math.ceil(span / 86400 / 8))
    t = math.ceil(t0 / step) * step
    while t <= t1:
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="#eee"/>')
        out.append(f'<text x="{x(t):.1f}" y="{HEIGHT - BOTTOM + 15}" text-anchor="middle" fill="#555">'
                   f'{_clock(t, step, span)}</text>')
        t += step
    out.append(f'<path d="M{LEFT} {TOP}V{HEIGHT - BOTTOM}H{WIDTH - RIGHT}" fill="none" stroke="#999"/>')
    for i, name in enumerate(names):
        colour = COLOURS[i % len(COLOURS)]
        times, values = series[name]
        d = " ".join(f"{'M' if j == 0 else 'L'}{x(a):.1f} {y(b):.1f}" for j, (a, b) in enumerate(zip(times, values)))
        out.append(f'<path class="line" data-series={quoteattr(name)} data-points="{len(times)}" '
                   f'data-last="{values[-1]!r}" d="{d}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        lx, ly = LEFT + (i % 4) * 220, HEIGHT + 4 + (i // 4) * 18
        out.append(f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{lx + 14}" y="{ly + 9}">{escape(name)} '
                   f'<tspan fill="#666">{escape(fmt(values[-1], unit))}</tspan></text>')
    if not names:
        out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#aaa">no data</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def plot(path: str, value_field: str, series_field: str | None, out: str, time_field: str,
         unit: str | None, title: str | None) -> int:
    from ..config.dashboard import guess_unit

    if not out.endswith(".svg"):
        print(f"plot: {out}: only SVG is written (.svg); no dependency of the pipeline draws PNG, "
              "but a browser or rsvg-convert turns the SVG into one", file=sys.stderr)
        return 2
    try:
        found = read(Path(path), value_field, series_field, time_field)
    except OSError as e:
        print(f"plot: cannot read {path}: {e}", file=sys.stderr)
        return 1
    for count, what in ((found.bad_lines, "lines that are not JSON"),
                        (found.no_value, f"records without a number at {value_field!r}"),
                        (found.no_time, f"records without a time at {time_field!r} (epoch seconds or RFC 3339)")):
        if count:
            print(f"plot: {path}: {count} {what} left out", file=sys.stderr)
    if not found.series:
        print(f"plot: {path}: nothing to chart", file=sys.stderr)
        return 1
    chart = svg(title or value_field, unit or guess_unit(value_field), found.series)
    Path(out).write_text(chart, encoding="utf-8")
    points = sum(len(t) for t, _ in found.series.values())
    print(f"plot: {out}: {len(found.series)} series, {points} points", file=sys.stderr)
    return 0
