"""Prometheus remote write 1.0: a `prometheus.WriteRequest` in protobuf, snappy block framed.

The message is five small types (WriteRequest, TimeSeries, Label, Sample, MetricMetadata), so
it is written here by hand rather than through the protobuf runtime and code generated from
Prometheus' .proto files (which import gogoproto): a dependency of several MB and a build step
for some 60 lines, and encoding a sample is then a struct.pack and a varint. Field numbers are
the remote-write specification's (tests/fixtures/prometheus/remote_write.proto). Snappy is cramjam's (Rust, wheels for every
platform; python-snappy itself now wraps it).
"""

from __future__ import annotations

import struct
from operator import itemgetter

#: MetricMetadata.MetricType
METRIC_TYPES = {"counter": 1, "gauge": 2}

_double = struct.Struct("<d").pack
_INT64 = (1 << 64) - 1

Labels = tuple[tuple[str, str], ...]


def varint(n: int) -> bytes:
    n &= _INT64  # an int64 below 0 is its two's complement, ten bytes long
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(key: int, data: bytes) -> bytes:
    """A length-delimited field; `key` is (field number << 3) | 2."""
    return bytes((key,)) + varint(len(data)) + data


def labels(items: Labels) -> bytes:
    """TimeSeries.labels (field 1), each Label {name = 1, value = 2}; Prometheus wants them
    sorted by name, `__name__` among them."""
    return b"".join(_field(0x0A, _field(0x0A, name.encode()) + _field(0x12, value.encode()))
                    for name, value in sorted(items))


def timestamp(ms: int) -> bytes:
    """Sample.timestamp (field 2, int64 ms), made once per record: its samples share it."""
    return b"\x10" + varint(ms)


def timeseries(encoded_labels: bytes, samples: list[tuple[int, bytes, float]]) -> bytes:
    """WriteRequest.timeseries (field 1): the labels, then each Sample {double value = 1,
    int64 timestamp = 2} as TimeSeries.samples (field 2), oldest first; `samples` holds
    (ms, timestamp(ms), value) and is sorted in place."""
    samples.sort(key=itemgetter(0))
    double = _double
    parts = [encoded_labels]
    for _, stamp, value in samples:
        body = b"\x09" + double(value) + stamp
        parts.append(b"\x12" + bytes((len(body),)) + body)  # at most 20 bytes: one length byte
    return _field(0x0A, b"".join(parts))


def metadata(name: str, kind: str, help: str) -> bytes:
    """WriteRequest.metadata (field 3): MetricMetadata {type = 1, metric_family_name = 2,
    help = 4}."""
    body = b"\x08" + varint(METRIC_TYPES[kind]) + _field(0x12, name.encode()) + _field(0x22, help.encode())
    return _field(0x1A, body)


def snappy_block(data: bytes) -> bytes:
    """Snappy's block format (not its framed stream format), as remote write specifies."""
    import cramjam  # imported where used: a --once run without this sink never pays for it

    return bytes(cramjam.snappy.compress_raw(data))
