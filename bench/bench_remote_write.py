"""Remote-write benchmark: the 10,000-line Docker stats replay through
`stdin -> docker_metrics -> prometheus_remote_write` into a local VictoriaMetrics (Debian's
`victoria-metrics`, started here), every numeric field a series (14 a record), each sample at its
`read` time; beside the same run into the file sink, and a bare loop doing the work of this
process with the same filter and encoder (parse, docker_metrics, WriteRequest, snappy) without
sending it. Then the encoding alone (WriteRequest + snappy, samples/s) against orjson writing the
same records as JSON lines, the file sink's work.

    python bench/bench_remote_write.py [--rounds N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import orjson  # noqa: E402

from bench.common import FIXTURES, best_of, replay_lines, report, run_graph  # noqa: E402
from pipeline.codecs import remote_write as rw  # noqa: E402
from tests.helpers import make_plugin  # noqa: E402
from tests.remote_write_peers import VictoriaMetrics  # noqa: E402

SERIES = {"labels": ["name"], "time_field": "read", "static_labels": {"job": "bench"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3, help="measure each side this many times, keep the best")
    args = ap.parse_args()
    lines = replay_lines(FIXTURES / "docker" / "stats-replay.jsonl.gz")
    with tempfile.TemporaryDirectory() as tmp:
        server = VictoriaMetrics(Path(tmp))
        server.start()
        try:
            remote = {"sources": {"in": {"type": "stdin"}},
                      "filters": {"metrics": {"type": "docker_metrics", "inputs": ["in"]}},
                      "sinks": {"rw": {"type": "prometheus_remote_write", "inputs": ["metrics"],
                                       "url": server.write_url, **SERIES}}}
            to_file = {**remote, "sinks": {"file": {"type": "file", "inputs": ["metrics"],
                                                    "path": str(Path(tmp) / "out.jsonl")}}}

            def bare() -> float:
                metrics = make_plugin("filter", "docker_metrics")
                sink = make_plugin("sink", "prometheus_remote_write", url=server.write_url, **SERIES)
                started = time.perf_counter()
                batch = metrics.process([("t", 0, orjson.loads(line)) for line in lines])
                rw.snappy_block(sink.encode(batch))  # one batch: the floor of the work, not sent
                return time.perf_counter() - started

            remote_s, file_s, bare_s = best_of(args.rounds, lambda: run_graph(remote, lines),
                                               lambda: run_graph(to_file, lines), bare)
        finally:
            server.stop()
    report("stdin -> docker_metrics -> prometheus_remote_write (Docker replay, VictoriaMetrics)",
           len(lines), remote_s, bare_s)
    print(f"  to the file sink instead: {len(lines) / file_s:,.0f} records/s ({file_s:.3f} s), "
          f"remote write at {file_s / remote_s:.0%} of its rate")

    records = make_plugin("filter", "docker_metrics").process([("t", 0, orjson.loads(line)) for line in lines])
    sink = make_plugin("sink", "prometheus_remote_write", url="http://127.0.0.1:1/", **SERIES)
    samples = sum(len(sink.names.values(r)) for _, _, r in records)

    def encode() -> float:
        started = time.perf_counter()
        rw.snappy_block(sink.encode(records))
        return time.perf_counter() - started

    def as_json() -> float:
        started = time.perf_counter()
        b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for _, _, r in records)
        return time.perf_counter() - started

    encode_s, json_s = best_of(args.rounds, encode, as_json)
    print(f"encoding alone: {len(records)} records, {samples} samples")
    print(f"  WriteRequest + snappy  {samples / encode_s:>12,.0f} samples/s  ({encode_s:.3f} s)")
    print(f"  orjson JSON lines      {len(records) / json_s:>12,.0f} records/s  ({json_s:.3f} s)")


if __name__ == "__main__":
    main()
