"""Sink `kafka`: records to Apache Kafka topics, each write done when the broker acked it all."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ..codecs.kafka import CONNECTION_OPTIONS, check_client, client_config, refused_for_good, topic_name
from ..config.options import Bool, Duration, Enum, Int, ListOf, Option, Size
from ..config.templates import KeyPath, Template, compile_value, getter
from ..event import Batch, Event
from ..plugin import DataError, Sink
from .stdout import FORMAT_OPTIONS, make_encoder

ACKS = {"all": "all", "leader": "1", "none": "0"}


class _Deliveries:
    """The broker's delivery reports of one write, counted as librdkafka's poll thread hands
    them over; `done` is set on the event loop once every produced record has its report."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.done = loop.create_future()
        self.reports = 0
        #: produced records, known once all are produced (until then, more than any count)
        self.expected = float("inf")
        #: (index in the write, error) of the records that were not delivered
        self.failed: list[tuple[int, Any]] = []

    def report(self, index: int):  # one callable a record: it must say which record failed
        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                self.failed.append((index, error))
            self.reports += 1  # only librdkafka's poll thread counts: no lost update
            if self.reports >= self.expected:
                self.loop.call_soon_threadsafe(self._finish)
        return delivered

    def produced(self, n: int) -> None:
        self.expected = n
        if self.reports >= n:
            self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class KafkaSink(Sink):
    """Produce each record to a Kafka topic, a write done when the broker acked all of it.

    The topic may hold `${tag}`, `${tag_parts[N]}` and `${record.FIELD}`; what fills it is
    made a valid topic name: other characters than letters, digits, `.`, `_` and `-` become `_`.

    A write is done only when the broker has acknowledged every record of it (`acks: all`
    and the idempotent producer by default), so a tail position, or a forward source's ack
    (`ack: delivery`), moves only then. A record the broker refuses for good (larger than the
    topic's `max.message.bytes`, a topic that does not exist or may not be written) goes to
    `_errors` with the broker's reason and the rest of the write is delivered once. A broker
    that is down: librdkafka retries for `delivery_timeout`, then the write fails and is
    retried with backoff behind the buffer (health red after `unhealthy_after`); what was
    delivered of it is not sent again. Each record's timestamp is its event's time.
    """

    options = (
        *CONNECTION_OPTIONS,
        Option("topic", Template(), help="topic; may hold ${tag}, ${tag_parts[N]} and ${record.FIELD}"),
        Option("key", KeyPath(), None, "the field whose value is the record's key (a.b for a nested "
               "one), so that records of one key keep one partition and their order; default: none, "
               "records spread over the partitions"),
        *FORMAT_OPTIONS,
        Option("headers", ListOf(Enum("tag", "time")), [],
               "Kafka headers to add: `tag` (the event's tag), `time` (its time in nanoseconds)"),
        Option("compression", Enum("none", "gzip", "snappy", "lz4", "zstd"), "none",
               "compression of the record batches"),
        Option("acks", Enum(*ACKS), "all", "acknowledgement the broker gives: all (every in-sync "
               "replica has the record), leader, or none"),
        Option("idempotence", Bool(), True,
               "the idempotent producer: librdkafka's retries never duplicate or reorder (needs acks: all)"),
        Option("linger", Duration(min=0), 0.005, "time records wait to fill a batch before it is sent"),
        Option("batch_max_bytes", Size(), 1_000_000, "most bytes in one record batch (a partition's, per request)"),
        Option("batch_max_messages", Int(min=1), 10000, "most records in one record batch"),
        Option("delivery_timeout", Duration(min=0.001), 30.0,
               "how long librdkafka retries a record before the write fails (then it is retried with backoff)"),
    )

    @classmethod
    def fields(cls, conf, upstream, check):
        check_client(check)
        if conf.idempotence and conf.acks != "all":
            check.error("acks", "the idempotent producer needs acks: all (or idempotence: false)")
        return None

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.encoder = make_encoder(ctx, conf)
        self.topic_of = compile_value(conf.topic)
        self.reads_record = "${record." in conf.topic
        self.key_of = getter(conf.key) if conf.key else None
        self.producer: Any = None
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()
        #: records of the last write that were delivered before it failed, by id: the next
        #: write (its retry, or the rest of it) does not send them again
        self._delivered: dict[int, Event] = {}
        self._topics: dict[str, str | None] = {}

    def _config(self) -> dict[str, Any]:
        c = self.conf
        return {
            **client_config(c, f"pipeline-{self.ctx.id}", self._down),
            "acks": ACKS[c.acks], "enable.idempotence": c.idempotence,
            "compression.type": c.compression, "linger.ms": c.linger * 1000,
            "batch.size": c.batch_max_bytes, "batch.num.messages": c.batch_max_messages,
            "message.timeout.ms": int(c.delivery_timeout * 1000),
            # the buffer bounds what is held; librdkafka's queue only holds what a write sent
            "queue.buffering.max.messages": max(100000, 2 * c.chunk_max_events),
            "queue.buffering.max.kbytes": max(1 << 20, 2 * c.chunk_max_bytes // 1024),
            **c.librdkafka,
        }

    async def start(self) -> None:
        from confluent_kafka import Producer

        self._loop = asyncio.get_running_loop()
        self.producer = Producer(self._config())
        self._poller = threading.Thread(target=self._poll, name=f"kafka {self.ctx.id}", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        # delivery reports run their callbacks in whichever thread polls: this one, so the
        # event loop never blocks on the broker
        while not self._stopping.is_set():
            self.producer.poll(0.1)
            self.ctx.gauges["producer_queue"] = len(self.producer)

    def _down(self, why: str) -> None:
        self._loop.call_soon_threadsafe(self.ctx.health, "brokers", False, f"{why}; records wait in the buffer")

    def _topic(self, event: Event) -> str | None:
        tag = event[0]
        if self.reads_record:
            return topic_name(str(self.topic_of(tag, event[2])))
        topic = self._topics.get(tag, "")
        if topic == "":
            if len(self._topics) > 10000:  # tags from `*` paths can be many: bounded
                self._topics.clear()
            topic = self._topics[tag] = topic_name(str(self.topic_of(tag, {})))
        return topic

    def _key(self, record: dict) -> bytes | None:
        value = self.key_of(record)  # type: ignore[misc]
        if value is None or isinstance(value, bytes):
            return value
        return (value if isinstance(value, str) else str(value)).encode("utf-8", "surrogateescape")

    async def write(self, batch: Batch) -> None:
        from confluent_kafka import KafkaException

        skip, self._delivered = self._delivered, {}
        if skip:
            batch = [e for e in batch if skip.get(id(e)) is not e]
        topics = [self._topic(e) for e in batch]
        unnamed = [e for e, t in zip(batch, topics) if t is None]
        if unnamed:
            raise DataError(f"the topic template {self.conf.topic!r} gives no topic name", unnamed)
        values = self.encoder.encode_each(batch)  # all encoded before any is sent
        deliveries = _Deliveries(self._loop)
        produce, key_of, stamp = self.producer.produce, self.key_of, set(self.conf.headers)
        refused: list[tuple[int, Any]] = []
        sent = 0
        for i, (event, topic, value) in enumerate(zip(batch, topics, values)):
            tag, t, record = event
            headers = None
            if stamp:
                headers = [(h, tag.encode("utf-8", "surrogateescape") if h == "tag" else str(t).encode())
                           for h in self.conf.headers]
            while True:
                try:
                    produce(topic, value, self._key(record) if key_of else None,
                            on_delivery=deliveries.report(i), timestamp=t // 1_000_000, headers=headers)
                    sent += 1
                except BufferError:  # librdkafka's queue is full: wait for reports to empty it
                    await asyncio.sleep(0.01)
                    continue
                except KafkaException as e:  # refused before sending (larger than message.max.bytes)
                    refused.append((i, f"librdkafka refused it before sending: {e.args[0].str()}"))
                break
        deliveries.produced(sent)
        await deliveries.done
        self.ctx.counters["bytes_out"] += sum(map(len, values))
        refused += [(i, f"the broker refused it: {e.str()}") for i, e in deliveries.failed if refused_for_good(e)]
        retried = [e for i, e in deliveries.failed if not refused_for_good(e)]
        if refused or retried:
            failed = {i for i, _ in refused} | {i for i, _ in deliveries.failed}
            self._delivered = {id(e): e for i, e in enumerate(batch) if i not in failed}
        if retried:
            raise ConnectionError(f"{len(retried)} of {len(batch)} records not delivered: {retried[0].str()}")
        self.ctx.health("brokers", True, "kafka: the brokers take records again")
        if refused:
            raise DataError("; ".join(sorted({why for _, why in refused})), [batch[i] for i, _ in refused])

    async def stop(self) -> None:
        self._stopping.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join)
        if self.producer is not None:
            # what is still on its way gets a moment: its chunk is not acked, so at worst it
            # comes again (file buffer), never lost twice
            await asyncio.to_thread(self.producer.flush, 1.0)


PLUGIN = KafkaSink
