"""Fuzzing what peers and operators hand us: the forward source's framing and decoding (msgpack
and JSON, gzip, the handshake), the stdin/exec parsers and the config loader. Property:
only the documented error types come out, and nothing hangs.

Seeded with valid input and with the bad input of issue 11. Bounded for CI (FUZZ_EXAMPLES,
default 300 a test); a longer run by hand: FUZZ_EXAMPLES=100000 pytest tests/test_fuzz.py.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

import msgpack
from helpers import ROOT, event_time, gunzip, make_plugin
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.codecs import forward_protocol as fp
from pipeline.codecs.formats import DECODE_FORMATS, decoder
from pipeline.codecs.json_stream import JsonStreamError
from pipeline.config.graph import ConfigError, build_graph
from pipeline.config.options import Errors
from pipeline.config.yaml_loader import parse_yaml

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: no example may take longer than this (a hang, or a quadratic path)
HANG_SECONDS = 10


class _Hang(Exception):
    pass


@contextmanager
def no_hang():
    """An example that takes over HANG_SECONDS fails (SIGALRM), as a hang."""
    def hung(*_):
        raise _Hang(f"an example took over {HANG_SECONDS}s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---- the forward source: bytes as a peer sends them, split into reads anywhere

T = event_time(1700000000 * 10**9)
ENTRIES = fp.pack_entries([("t", 1700000000 * 10**9, {"a": 1, "b": [1, "x"]}), ("t", 1, {"c": None})])
GOOD_FRAMES = [
    msgpack.packb(["t", T, {"a": 1}, {"chunk": "c1"}]),
    msgpack.packb(["t", [[T, {"a": 1}], [1700000001, {"b": 2}]], {"chunk": "c2"}]),
    fp.packed_forward("t", ENTRIES, 2, "c3", False),
    fp.packed_forward("t", ENTRIES, 2, "c4", True),
    msgpack.packb(["t", 1700000000, {"a": 1}]),
]
BAD_FRAMES = [
    b"\xc1\xc1",
    msgpack.packb(["t", gzip.compress(b"", 1) * 2000 + gzip.compress(ENTRIES), {"compressed": "gzip", "chunk": "z"}]),
    msgpack.packb(["t", gzip.compress(b"\x00" * 2_000_000), {"compressed": "gzip"}]),  # past max_message_bytes
    msgpack.packb(["t", b"not gzip", {"compressed": "gzip"}]),
    msgpack.packb(["t", ENTRIES[:-3], {"chunk": "cut"}]),
    b"\x94\xa1t\x01\x81\xa1a\x01\x81\xa5chunk\xa2\xff\xfe",  # a chunk id that is not UTF-8
    msgpack.packb(["t", fp.pack_entries([("t", 1, {"k": 1})]).replace(b"\xa1k", b"\x81\x01\x01"), {}]),  # a map key
    msgpack.packb(["t", T, {"deep": [[[[[[[[[[]]]]]]]]]]}]) * 3,
    msgpack.packb(["t", msgpack.ExtType(5, b"x"), {}]),
    msgpack.packb(["t", 2**40, {"a": 1}, {"chunk": "big time"}]),
]
JSON_FRAMES = [
    json.dumps(["j", 1700000000, {"ü": "€😀"}, {"chunk": "j1"}], ensure_ascii=False).encode(),
    b'{"not": "a forward message"}', b"[" * 5000, b'["j", 1, {"a": "\\', b"[1, 2] x",
    b'["j", 1, {"a": "\xff\xfe"}, {"chunk": "\xff"}]',
]


class _Conn:
    """What the source reads from: the fuzzed reads, then the end."""

    def __init__(self, reads: list[bytes]):
        self.reads = reads
        self.origin = "fuzz:1"

    async def read(self) -> bytes:
        return self.reads.pop(0) if self.reads else b""


class _Writer:
    def __init__(self):
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        self.out += data

    async def drain(self) -> None:
        pass


class _Emit:
    def __init__(self):
        self.events: list = []

    async def __call__(self, batch, ack=None):
        self.events += batch

    async def packed(self, items, ack=None):  # decoded by the sinks, not by the source: not fuzzed here
        self.events += [e for item in items for e in [item] * item.count]


SOURCE = make_plugin("source", "forward", port=0, max_message_bytes=1024 * 1024)


def _reads(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a]


async def _session(reads: list[bytes]) -> bytes:
    SOURCE._emit = _Emit()
    conn, writer = _Conn(reads), _Writer()
    first = await conn.read()
    if first[:1] in (b"{", b"["):
        await SOURCE._json(conn, writer, first)
    elif first:
        await SOURCE._msgpack(conn, writer, fp.unpacker(SOURCE.conf.max_message_bytes), first)
    return bytes(writer.out)


def _forward(data: bytes, cuts: list[int]) -> None:
    try:
        with no_hang():
            asyncio.run(_session(_reads(data, cuts)))
    except (fp.ProtocolError, JsonStreamError):
        pass  # that connection is closed with a logged reason: documented


frames = st.one_of(st.sampled_from(GOOD_FRAMES + BAD_FRAMES), st.binary(max_size=200))
frame_runs = st.lists(frames, min_size=1, max_size=6).map(b"".join)


def _mutated(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for at, value in flips:
        if out:
            out[at % len(out)] = value
    return bytes(out)


@FUZZ
@given(st.builds(_mutated, frame_runs, st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4)),
       st.lists(st.integers(0, 10**6), max_size=8))
@example(b"".join(GOOD_FRAMES), [])
@example(b"".join(BAD_FRAMES), [7, 100, 1000])
def test_forward_msgpack_framing(data, cuts):
    _forward(data, cuts)


@FUZZ
@given(st.one_of(st.sampled_from(JSON_FRAMES), st.binary(max_size=300).map(lambda b: b"[" + b),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                              lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids), max_leaves=20)
                 .map(lambda v: json.dumps(["j", 1, {"v": v}, {"chunk": "x"}]).encode())),
       st.lists(st.integers(0, 10**6), max_size=8))
@example(b"".join(JSON_FRAMES), [1, 2, 3, 50])
def test_forward_json_framing(data, cuts):
    _forward(data, cuts)


@FUZZ
@given(st.binary(max_size=2000), st.integers(1, 10**6))
@example(gzip.compress(b"", 1) * 5000, 100)
@example(gzip.compress(b"x" * 100_000), 1000)
def test_inflate(blob, max_bytes):
    try:
        with no_hang():
            out = gunzip(blob, max_bytes)
    except fp.ProtocolError:
        return
    assert len(out) <= max_bytes


KEYED = make_plugin("source", "forward", port=0, shared_key="k", users=[{"username": "u", "password": "p"}])
PINGS = [fp.ping("h", "salt", b"n" * 16, "k", b"a" * 16, "u", "p"),
         msgpack.packb(["PING", "HOST", "salt", "0" * 128, "", ""]).replace(b"\xa4HOST", b"\xa4\xff\xfe\xfd\xfc"),
         msgpack.packb(["PING", 1, 2, 3, 4, 5]), msgpack.packb(["PING"]), msgpack.packb({"PING": 1})]


@FUZZ
@given(st.builds(_mutated, st.one_of(st.sampled_from(PINGS), st.binary(max_size=100)),
                 st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=3)),
       st.lists(st.integers(0, 10**6), max_size=4))
def test_forward_handshake(data, cuts):
    async def handshake() -> None:
        await KEYED._handshake(_Conn(_reads(data, cuts)), _Writer(), fp.unpacker())

    try:
        with no_hang():
            asyncio.run(handshake())
    except (fp.ProtocolError, ConnectionError):
        pass  # a refused handshake closes the connection with a logged reason


# ---- stdin and exec: every format, any split

@FUZZ
@given(st.sampled_from(DECODE_FORMATS),
       st.one_of(st.binary(max_size=500),
                 st.sampled_from([b'{"a": 1}\n{"n": 1180591620717411303424}\n', b'{"a": "\xff\xfe"}\n', b"x" * 300,
                                  msgpack.packb({"a": [1, 2]}) + msgpack.packb({(1, 2): 1}, use_bin_type=True),
                                  b'[{"a": 1}, {"b": 2}]', b'{"a": 1}\r\n\n\n'])),
       st.lists(st.integers(0, 10**6), max_size=6))
def test_stdin_and_exec_parsers(fmt, data, cuts):
    d = decoder(fmt, max_bytes=256, max_line_bytes=128)
    with no_hang():
        for piece in _reads(data, cuts):
            records, problems = d.feed(piece)
            assert all(isinstance(r, dict) for r in records)
            assert all(isinstance(message, str) for message, _ in problems)
        d.finish()


# ---- the config loader

CONFIGS = [p.read_text() for p in sorted((ROOT / "conf").glob("*.yaml"))]
YAML_BITS = ["sources:", "sinks:", "filters:", "  in:", "  out:", "{type: stdin}", "{type: file, inputs: [in], path: x}",
             "&a", "*a", "<<: *a", "[", "]", "{", "}", "- ", ": ", "\n", "  ", "${X:-1}", "${", "!!python/object:os.system",
             "'", '"', "#", "---", "...", "? ", "|", ">", "\t", "1e999", "0x1f", "~"]


@FUZZ
@given(st.one_of(st.sampled_from(CONFIGS),
                 st.lists(st.sampled_from(YAML_BITS), max_size=40).map("".join),
                 st.builds(lambda c, at, junk: c[:at % (len(c) + 1)] + junk + c[at % (len(c) + 1):],
                           st.sampled_from(CONFIGS), st.integers(0, 10**5), st.sampled_from(YAML_BITS)),
                 st.text(max_size=300)))
@example("a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(f"{y}: &{y} [{','.join([f'*{x}'] * 9)}]\n"
                                                  for x, y in zip("abcdefgh", "bcdefghi")))
@example("x: " + "[" * 3000)
@example("sources:\n  s: {type: http_json, url: 'http://[127.0.0.1:4000/x'}\n")  # found by a long run
def test_config_loader(text):
    errors = Errors(file="fuzz.yaml")
    try:
        with no_hang():
            build_graph(parse_yaml(text, errors, env={}), errors)
    except ConfigError as e:
        assert all(isinstance(line, str) and line.startswith("fuzz.yaml") for line in e.errors.lines())


def test_the_seeds_are_what_they_say():
    """The valid frames are valid: the fuzzing above starts from input the source takes."""
    asyncio.run(_session([b"".join(GOOD_FRAMES)]))
    assert len(SOURCE._emit.events) == 1 + 2 + 2 + 2 + 1
    assert Path(ROOT / "conf").is_dir() and CONFIGS
