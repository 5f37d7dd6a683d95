"""`pipeline top`: a running pipeline's components, refreshed every second, in a terminal.

curses from the standard library: it works over SSH, needs no mouse, and is imported only
here, so no other command pays for it. The view is laid out for 80x24; wider, the id,
type and retry columns take the room; taller, more rows show.
"""

from __future__ import annotations

import time
from typing import Any

from ..api.client import ApiUnreachable, Client

REFRESH = 1.0
#: (title, minimum width, share of the extra width); widths sum to 80 with the gaps
COLUMNS = (("ID", 16, 2), ("KIND", 6, 0), ("TYPE", 12, 1), ("IN/s", 9, 0), ("OUT/s", 9, 0),
           ("ERRORS", 7, 0), ("BUFFER", 8, 0), ("RETRY", 6, 1))


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if value >= scale * 10:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _count(n: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def _buffer(comp: dict[str, Any]) -> str:
    """The sink's buffer fill, and its records on their way to Kafka (q); for a Kafka source
    the records its partitions hold past the group's commits."""
    gauges = comp.get("gauges", {})
    lag = gauges.get("consumer_lag")
    if lag is not None:
        return f"lag {_count(sum(lag.values()))}"
    buf = comp.get("buffer")
    if buf is None:
        return ""
    fill = buf["bytes"] / buf["max_bytes"] if buf["max_bytes"] else 0.0
    queue = f" q{_count(gauges['producer_queue'])}" if gauges.get("producer_queue") else ""
    return ("FULL " if buf["full"] else "") + f"{fill:.0%}" + queue


def _retry(comp: dict[str, Any]) -> str:
    sink = comp.get("sink")
    if sink is None:
        return ""
    parts = []
    if sink["retrying_seconds"] is not None:
        parts.append(f"{sink['retrying_seconds']:.0f}s")
    if sink["given_up"]:
        parts.append(f"gave up {sink['given_up']}")
    return " ".join(parts) or "ok"


def _widths(width: int) -> list[int]:
    base = [c[1] for c in COLUMNS]
    extra = max(0, width - sum(base) - (len(base) - 1))
    shares = sum(c[2] for c in COLUMNS)
    grown = [w + extra * c[2] // shares for w, c in zip(base, COLUMNS)]
    return grown


def _cells(cells: list[str], widths: list[int]) -> str:
    out = []
    for i, (text, w) in enumerate(zip(cells, widths)):
        text = text if len(text) <= w else text[:w - 1] + "~"
        out.append(text.rjust(w) if 3 <= i <= 5 else text.ljust(w))
    return " ".join(out).rstrip()


class View:
    """What is shown: the last answers, and the events/s between the last two."""

    def __init__(self, client: Client):
        self.client = client
        self.components: list[dict[str, Any]] = []
        self.health: dict[str, Any] = {}
        self.error: str | None = None
        self.rates: dict[str, tuple[float | None, float | None]] = {}
        self._last: tuple[float, dict[str, tuple[int, int]]] | None = None

    def refresh(self) -> None:
        try:
            _, self.health = self.client.get("/healthz")
            status, doc = self.client.get("/api/components")
        except (ApiUnreachable, ValueError) as e:
            self.error = str(e)
            self._last = None
            return
        if status != 200 or not isinstance(doc, dict) or "components" not in doc:
            # the api's own failure is shown, and top keeps asking: it may be a passing one
            said = doc.get("error") if isinstance(doc, dict) else None
            self.error = f"/api/components answered {status}: {said or doc!r}"
            self._last = None
            return
        self.error = None
        self.components = doc["components"]
        now = time.monotonic()
        counts = {c["id"]: (c["counters"].get("events_in", 0), c["counters"].get("events_out", 0))
                  for c in self.components}
        if self._last is not None:
            then, before = self._last
            dt = max(now - then, 1e-6)
            self.rates = {cid: tuple((n - before[cid][i]) / dt if cid in before else None  # type: ignore[misc]
                                     for i, n in enumerate(pair)) for cid, pair in counts.items()}
        self._last = (now, counts)

    def lines(self, width: int, height: int) -> list[str]:
        title = f"pipeline top  {self.client.address}  {time.strftime('%H:%M:%S')}"
        out = [title[:width]]
        if self.error is not None:
            out.append(self.error[:width])
        elif self.health.get("status") == "ok":
            out.append("health: ok")
        else:
            failing = "; ".join(f"{f['component']}: {f['reason']}" for f in self.health.get("failing", []))
            out.append(f"health: FAILING  {failing}"[:width])
        widths = _widths(width)
        out.append(_cells([c[0] for c in COLUMNS], widths))
        rows = []
        for comp in self.components:
            rate_in, rate_out = self.rates.get(comp["id"], (None, None))
            rows.append(_cells([
                comp["id"], comp["kind"], comp["type"],
                "" if comp["kind"] == "source" else _rate(rate_in), _rate(rate_out),
                str(comp["counters"].get("errors", 0)), _buffer(comp), _retry(comp)], widths))
        room = height - len(out) - 1
        if len(rows) > room:
            rows = rows[:max(room - 1, 0)] + [f"... {len(rows) - room + 1} more (a taller window shows them)"]
        out += rows
        out += [""] * (height - len(out) - 1) + ["q quits"]
        return [line[:width] for line in out[:height]]


def _run(screen: Any, view: View) -> None:
    import curses

    try:
        curses.curs_set(0)
    except curses.error:  # a terminal that cannot hide the cursor
        pass
    while True:
        view.refresh()
        deadline = time.monotonic() + REFRESH
        while True:
            height, width = screen.getmaxyx()
            screen.erase()
            for y, line in enumerate(view.lines(width, height)):
                try:
                    screen.addnstr(y, 0, line, width - 1, curses.A_BOLD if y == 2 else 0)
                except curses.error:  # the window shrank while drawing
                    break
            screen.refresh()
            left = deadline - time.monotonic()
            if left <= 0:
                break
            screen.timeout(max(1, int(left * 1000)))
            key = screen.getch()
            if key in (ord("q"), ord("Q")):
                return


def main(address: str) -> int:
    import curses
    import os

    # the window's size, not $LINES/$COLUMNS: ncurses takes those first, and they stay as
    # exported while the window grows
    os.environ.pop("LINES", None)
    os.environ.pop("COLUMNS", None)
    try:
        curses.wrapper(_run, View(Client(address, timeout=REFRESH)))
    except KeyboardInterrupt:
        pass
    return 0
