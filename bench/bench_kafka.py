"""Kafka benchmark, all against one real Apache Kafka 4.1 broker (tests/kafka_peer.py, full JIT):

- Kafka's own producer, `kafka-producer-perf-test` (org.apache.kafka.tools.ProducerPerformance,
  the same jars): N records of 500 bytes, acks=all: the physical limit here;
- a bare loop: confluent-kafka's Producer fed the same file's lines as JSON, acks=all and
  idempotence, one delivery callback a record: what the client does in Python with no pipeline;
- our sink: the same lines from a file through `tail (--once, read_from_head) -> kafka`
  (acks=all, idempotence on), each record `{"message": LINE}` (514 bytes);
- Kafka's own consumer, `kafka-consumer-perf-test` (ConsumerPerformance), on our sink's topic;
- a bare loop: confluent-kafka's Consumer reading that topic, orjson.loads per record;
- our source: `kafka (--once, to the end of the topic) -> discard`, offsets committed after delivery.

    python bench/bench_kafka.py [--records N] [--partitions P]

Each side of the pipeline runs as `pipeline run --once` in its own process; its records/s is N
over its whole wall time (start-up and group join included) and its peak RSS (VmHWM) is its own.
Targets: sink >= 50% and source >= 50% of Kafka's own tools' records/s, peak RSS <= 100 MiB.
"""

from __future__ import annotations

import argparse
import random
import re
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import run_measured  # noqa: E402
from tests.kafka_peer import KafkaBroker, Unavailable, classpath  # noqa: E402

#: the broker as Kafka ships it would run: full JIT, a heap of its own
JVM = ("-Xmx1g", "-XX:+UseG1GC")


def java(main: str, *args: str) -> str:
    done = subprocess.run(["java", "-Xmx512m", "-cp", classpath(), main, *args],
                          capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise SystemExit(f"{main} failed: {done.stderr[-1000:]}")
    return done.stdout


def producer_perf(broker: KafkaBroker, topic: str, n: int) -> float:
    out = java("org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", str(n),
               "--record-size", "500", "--throughput", "-1",
               "--producer-props", f"bootstrap.servers={broker.bootstrap}", "acks=all")
    return float(re.findall(r"records sent, ([\d.]+) records/sec", out)[-1])


def consumer_perf(broker: KafkaBroker, topic: str, n: int) -> float:
    out = java("org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", broker.bootstrap,
               "--topic", topic, "--messages", str(n), "--group", f"perf-{time.time_ns()}", "--timeout", "60000")
    header, row = [line for line in out.splitlines() if line.strip()][-2:]
    return float(dict(zip((h.strip() for h in header.split(",")), row.split(",")))["nMsg.sec"])


def write_lines(path: Path, n: int) -> None:
    rng = random.Random(7)
    alphabet = (string.ascii_letters + string.digits).encode()
    block = bytes(rng.choice(alphabet) for _ in range(1 << 16))
    with open(path, "wb") as f:
        for i in range(n):
            start = (i * 7919) % (len(block) - 500)
            f.write(b"%08d " % i + block[start:start + 490] + b"\n")


def bare_producer(broker: KafkaBroker, topic: str, path: Path) -> float:
    import orjson
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "queue.buffering.max.messages": 1_000_000})
    delivered = [0]

    def report(error, _message) -> None:
        if error is None:
            delivered[0] += 1
    started = time.perf_counter()
    with open(path, "rb") as f:
        for line in f:
            value = orjson.dumps({"message": line[:-1].decode()})
            while True:
                try:
                    producer.produce(topic, value, on_delivery=report)
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
    producer.flush()
    return delivered[0] / (time.perf_counter() - started)


def bare_consumer(broker: KafkaBroker, topic: str, n: int) -> float:
    import orjson
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"bare-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    started = time.perf_counter()
    seen = 0
    while seen < n:
        for m in consumer.consume(10000, 1.0):
            if m.error() is None:
                orjson.loads(m.value())
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen / elapsed


def ours(conf: dict, tmp: Path, name: str, n: int) -> tuple[float, float]:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(conf))
    started = time.perf_counter()
    done, peak = run_measured("run", "--once", str(path), timeout=1800)
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{name} failed: {done.stderr.decode()[-2000:]}")
    return n / elapsed, peak / (1 << 20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--buffer", default="64MiB", help="the sink's memory buffer max_bytes")
    args = ap.parse_args()
    n = args.records
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = KafkaBroker(tmp / "broker", jvm=JVM)
        try:
            broker.start()
        except Unavailable as e:
            raise SystemExit(f"no Kafka broker: {e}") from None
        try:
            for topic in ("perf", "bare", "ours"):
                broker.create_topic(topic, args.partitions)
            lines = tmp / "records.log"
            write_lines(lines, n)
            kafka_out = producer_perf(broker, "perf", n)
            bare_out = bare_producer(broker, "bare", lines)
            sink, sink_rss = ours({
                "state_dir": str(tmp / "state"),
                "sources": {"t": {"type": "tail", "path": str(lines), "read_from_head": True}},
                "sinks": {"k": {"type": "kafka", "inputs": ["t"], "brokers": broker.bootstrap, "topic": "ours",
                                      "buffer": {"max_bytes": args.buffer}}},
            }, tmp, "sink", n)
            kafka_in = consumer_perf(broker, "ours", n)
            bare_in = bare_consumer(broker, "ours", n)
            source, source_rss = ours({
                "sources": {"k": {"type": "kafka", "brokers": broker.bootstrap, "topics": ["ours"],
                                  "group_id": f"ours-{time.time_ns()}"}},
                "sinks": {"out": {"type": "discard", "inputs": ["k"]}},
            }, tmp, "source", n)
        finally:
            broker.stop()
    print(f"{n:,} records of 500 bytes, {args.partitions} partitions, acks=all, one broker on 127.0.0.1")
    print(f"{'':34}{'records/s':>12}{'of Kafka':>10}{'of bare':>9}{'peak RSS':>10}")
    rows = (("kafka-producer-perf-test", kafka_out, kafka_out, bare_out, None),
            ("bare confluent-kafka producer", bare_out, kafka_out, bare_out, None),
            ("tail -> kafka sink", sink, kafka_out, bare_out, sink_rss),
            ("kafka-consumer-perf-test", kafka_in, kafka_in, bare_in, None),
            ("bare confluent-kafka consumer", bare_in, kafka_in, bare_in, None),
            ("kafka source -> discard", source, kafka_in, bare_in, source_rss))
    for name, rate, kafka, bare, rss in rows:
        mem = f"{rss:.0f} MiB" if rss is not None else ""
        print(f"{name:34}{rate:12,.0f}{rate / kafka:10.0%}{rate / bare:9.0%}{mem:>10}")


if __name__ == "__main__":
    main()
