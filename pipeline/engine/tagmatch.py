"""fluentd's tag patterns, with fluentd's semantics (lib/fluent/match.rb).

`*` matches one tag part (`a.*` matches `a.b`, not `a.b.c`), `**` zero or more
parts (`a.**` matches `a`, `a.b` and `a.b.c`), `{x,y}` either alternative,
`/regex/` a regular expression (in a config only); several patterns separated by
spaces match if any does.

A glob pattern becomes an automaton run a state set at a time (a DFA built as tags need
it), never a backtracking regular expression: a pattern from a client (a tap's `match=`)
costs time linear in the tag, where `*a*a*a*a*b`, or the regex `/(.*)*Z/` a tap once
took, doubled with each character of the tag.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: a pattern longer than this is refused where a client gives it (a tap)
MAX_PATTERN = 256
#: automaton states kept: a pattern whose tags need more starts the table afresh
_MAX_DFA_STATES = 4096

# edge kinds: a character, any character but a dot, any character, and two assertions that
# consume nothing: the next character is a dot or the tag ends; at the start of the tag
_CHAR, _NOT_DOT, _ANY, _PART_END, _START = range(5)


class PatternError(ValueError):
    """A tag pattern that cannot be used (a client's regular expression, too long)."""


class _Nfa:
    def __init__(self) -> None:
        #: per state: (kind, character, target); epsilon edges have kind None
        self.edges: list[list[tuple[int | None, str, int]]] = []

    def state(self) -> int:
        self.edges.append([])
        return len(self.edges) - 1

    def link(self, a: int, kind: int | None, b: int, char: str = "") -> None:
        self.edges[a].append((kind, char, b))


class _Parser:
    """fluentd's glob syntax to an NFA, as fluentd's GlobMatchPattern reads it: a dot is
    held back, as `**` after it (`a.**`) matches zero parts too."""

    def __init__(self, pat: str, nfa: _Nfa):
        self.pat, self.nfa, self.i, self.dot = pat, nfa, 0, False

    def sequence(self, at: int, nested: bool) -> int:
        """Read up to a `,` or `}` of this brace (or the end); the state it ends in."""
        pat, nfa = self.pat, self.nfa
        while self.i < len(pat):
            c = pat[self.i]
            if pat.startswith("**", self.i):
                if self.dot:
                    at = self._step(at, _PART_END)
                    self.dot = False
                if pat.startswith(".", self.i + 2):  # `**.`: any parts and a dot, or none at all
                    end, loop = nfa.state(), nfa.state()
                    nfa.link(at, _START, end)
                    nfa.link(at, None, loop)
                    nfa.link(loop, _ANY, loop)
                    nfa.link(loop, _CHAR, end, ".")
                    at, self.i = end, self.i + 3
                else:
                    at = self._loop(at, _ANY)
                    self.i += 2
                continue
            if self.dot:
                at = self._step(at, _CHAR, ".")
                self.dot = False
            if nested and c in ",}":
                return at
            self.i += 1
            if c == "\\":
                if self.i < len(pat):
                    at = self._step(at, _CHAR, pat[self.i])
                    self.i += 1
            elif c == ".":
                self.dot = True
            elif c == "*":
                at = self._loop(at, _NOT_DOT)
            elif c == "{":
                end = nfa.state()
                while True:
                    start = nfa.state()
                    nfa.link(at, None, start)
                    nfa.link(self.sequence(start, True), None, end)
                    if self.i >= len(pat):  # an unclosed brace closes at the end
                        break
                    self.i += 1
                    if pat[self.i - 1] == "}":
                        break
                at = end
            else:
                at = self._step(at, _CHAR, c)
        if self.dot:  # a dot last in the pattern is a dot
            at = self._step(at, _CHAR, ".")
            self.dot = False
        return at

    def _step(self, at: int, kind: int | None, char: str = "") -> int:
        nxt = self.nfa.state()
        self.nfa.link(at, kind, nxt, char)
        return nxt

    def _loop(self, at: int, kind: int) -> int:
        self.nfa.link(at, kind, at)
        return self._step(at, None)


class Glob:
    """One or more glob patterns as one automaton: a tag is matched in one pass over its
    characters, a dict lookup each once the states it goes through were seen."""

    def __init__(self, patterns: list[str]):
        nfa = self.nfa = _Nfa()
        start = nfa.state()
        self.accepting: set[int] = set()
        for pat in patterns:
            first = nfa.state()
            nfa.link(start, None, first)
            self.accepting.add(_Parser(pat, nfa).sequence(first, False))
        self.start = frozenset((start,))
        self.moves: dict[tuple[frozenset[int], str, bool], frozenset[int]] = {}
        self.ends: dict[tuple[frozenset[int], bool], bool] = {}

    def _closure(self, states: frozenset[int], next_char: str | None, at_start: bool) -> set[int]:
        seen = set(states)
        todo = list(states)
        edges = self.nfa.edges
        while todo:
            for kind, _, b in edges[todo.pop()]:
                if b in seen:
                    continue
                if kind is None or (kind == _PART_END and next_char in (".", None)) or (kind == _START and at_start):
                    seen.add(b)
                    todo.append(b)
        return seen

    def _move(self, states: frozenset[int], c: str, at_start: bool) -> frozenset[int]:
        out = set()
        edges = self.nfa.edges
        for s in self._closure(states, c, at_start):
            for kind, char, b in edges[s]:
                if (kind == _CHAR and char == c) or kind == _ANY or (kind == _NOT_DOT and c != "."):
                    out.add(b)
        return frozenset(out)

    def __call__(self, tag: str) -> bool:
        moves = self.moves
        if len(moves) > _MAX_DFA_STATES:
            moves.clear()
            self.ends.clear()
        states, at_start = self.start, True
        for c in tag:
            key = (states, c, at_start)
            nxt = moves.get(key)
            if nxt is None:
                nxt = moves[key] = self._move(states, c, at_start)
            if not nxt:
                return False
            states, at_start = nxt, False
        end = self.ends.get((states, at_start))
        if end is None:
            end = self.ends[(states, at_start)] = not self.accepting.isdisjoint(
                self._closure(states, None, at_start))
        return end


def matcher(patterns: str | list[str] | None, regex: bool = True) -> Callable[[str], bool] | None:
    """A cached predicate over tags, or None when everything matches. `regex=False` (a
    pattern a client gave): `/regex/` and patterns past MAX_PATTERN are a PatternError."""
    if patterns is None:
        return None
    if isinstance(patterns, str):
        patterns = patterns.split()
    regexes, globs = [], []
    for pat in patterns:
        if len(pat) > 1 and pat.startswith("/") and pat.endswith("/"):
            if not regex:
                raise PatternError(f"{pat!r}: a regular expression; only fluentd tag patterns "
                                   "(`*`, `**`, `{a,b}`) are taken here")
            regexes.append(re.compile(pat[1:-1]))
        elif not regex and len(pat) > MAX_PATTERN:
            raise PatternError(f"a tag pattern of {len(pat)} characters; at most {MAX_PATTERN}")
        else:
            globs.append(pat)
    glob = Glob(globs) if globs else None
    cache: dict[str, bool] = {}

    def match(tag: str) -> bool:
        hit = cache.get(tag)
        if hit is None:
            hit = (glob is not None and glob(tag)) or any(r.match(tag) for r in regexes)
            if len(cache) < 10000:
                cache[tag] = hit
        return hit

    return match
