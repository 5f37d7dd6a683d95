"""Source forward against gzip bombs (issue 20, point 1): CompressedPackedForward messages of a
few KB that inflate to millions of tiny events, beside good traffic. What one message may
cost is bounded (max_message_events; slices decoded one at a time), so peak memory stays low
and the good senders are served all along."""

from __future__ import annotations

import gzip
import random
import struct
import threading

import msgpack
from forward_peers import talk
from helpers import wait_for
from poison_peer import T0, Relay, good_blob, packed_message

MiB = 1024 * 1024
#: a forward relay with a file buffer is about 60 MiB; a bomb's inflated bytes and one slice
#: decoded at a time come on top
PEAK_RSS = 300 * MiB
MAX_EVENTS = 1_000_000  # the default of max_message_events

RECORDS = [b"\x80", b"\x81\xa1a\x01", b"\x81\xa1b\x90"]  # {}, {"a": 1}, {"b": []}
TIMES = [b"\xd7\x00" + struct.pack(">II", T0, 0), msgpack.packb(T0), b"\x00"]  # EventTime, seconds, 0 (now)


def bomb(rng: random.Random, events: int, chunk: str) -> bytes:
    """A CompressedPackedForward of `events` tiny entries, as one gzip member or several."""
    entry = b"\x92" + rng.choice(TIMES) + rng.choice(RECORDS)
    members = rng.choice([1, 1, 3])
    per = -(-events // members)
    blob = b"".join(gzip.compress(entry * min(per, events - i * per), 9) for i in range(members))
    return (b"\x93\xa4bomb\xc6" + struct.pack(">I", len(blob)) + blob
            + msgpack.packb({"size": events, "compressed": "gzip", "chunk": chunk}))


def acks_of(port: int, data: bytes) -> list:
    """The acks a message gets; [] when the source refuses it and closes the connection."""
    try:
        return talk(port, data, timeout=60)
    except (TimeoutError, ConnectionError):
        return []


class Watch(threading.Thread):
    """Samples the relay's peak RSS; stops it past the bound (a bomb on main took 14 GiB)."""

    def __init__(self, relay: Relay):
        super().__init__(daemon=True)
        self.relay, self.peak, self.done = relay, 0, threading.Event()
        self.start()

    def run(self) -> None:
        while not self.done.wait(0.05) and self.relay.proc.poll() is None:
            try:
                self.peak = self.relay.peak_rss()
            except (OSError, IndexError):
                return
            if self.peak > PEAK_RSS:
                self.relay.proc.kill()
                return


def test_fuzzed_gzip_bombs_beside_good_traffic_keep_memory_bounded(tmp_path):
    rng = random.Random(20)
    relay = Relay(tmp_path)
    watch = Watch(relay)
    good_acks: list = []

    def good_sender() -> None:
        for i in range(40):
            good_acks.extend(acks_of(relay.port, packed_message("app", good_blob(100, i * 100), 100, f"g{i}")))

    try:
        sender = threading.Thread(target=good_sender)
        sender.start()
        # bombs past max_message_events (refused) and under it (taken, then written a slice at a time)
        sizes = [rng.randrange(MAX_EVENTS + 1, 5_242_881) for _ in range(4)] + [rng.randrange(100_000, 250_000)
                                                                                for _ in range(2)]
        rng.shuffle(sizes)
        taken = 0
        for k, n in enumerate(sizes):
            got = acks_of(relay.port, bomb(rng, n, f"b{k}"))
            assert got == ([{"ack": f"b{k}"}] if n <= MAX_EVENTS else []), (n, got, watch.peak)
            taken += n if n <= MAX_EVENTS else 0
        sender.join(120)
        assert good_acks == [{"ack": f"g{i}"} for i in range(40)], watch.peak
        assert wait_for(lambda: relay.good_numbers() == list(range(4000)), timeout=60), watch.peak
        assert wait_for(lambda: len(relay.records()) == 4000 + taken, timeout=120), watch.peak
        assert relay.proc.poll() is None, f"stopped at {watch.peak / MiB:.0f} MiB"
        assert relay.peak_rss() < PEAK_RSS, relay.peak_rss()
    finally:
        watch.done.set()
        err = relay.stop() if relay.proc.poll() is None else ""
    assert "max_message_events" in err and "Traceback" not in err, err
