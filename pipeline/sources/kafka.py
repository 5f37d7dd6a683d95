"""Source `kafka`: records from Apache Kafka topics as a consumer group member, offsets
committed only once what was read is delivered."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from ..codecs.edge import MAX_DEPTH
from ..codecs.formats import DecodeError, has_long_digits, json_records, msgpack_record
from ..codecs.kafka import CONNECTION_OPTIONS, check_client, client_config
from ..config.options import Duration, Enum, Int, ListOf, OneOf, Option, Str
from ..engine.ack import InOrder
from ..event import Batch, now_ns
from ..parsers import Format, build
from ..plugin import Emit, StreamSource

#: a partition: (topic, partition number)
TP = tuple[str, int]


class KafkaSource(StreamSource):
    """Consume topics as a member of a consumer group; each record's value is parsed by
    `format` (json, msgpack, or any parser: nginx, logfmt, ...).

    Offsets are committed only after delivery: once every sink has the records of a batch
    (the end-to-end acknowledgement, the same that moves a tail position), in order per
    partition; so a SIGKILL at any moment loses nothing, and what was read since the last
    commit comes again. Pipelines with one `group_id` split the partitions; when one
    stops or dies, the others take its partitions over. A rebalance commits what was
    delivered of the partitions taken away and forgets the rest (their new owner reads it
    again). With `pipeline run --once` it reads every assigned partition to its end.
    """

    options = (
        *CONNECTION_OPTIONS,
        Option("topics", OneOf(Str(), ListOf(Str())),
               help="topics to read: names, or regular expressions starting with ^ (Kafka's rule)"),
        Option("group_id", Str(), help="consumer group: pipelines with the same one share the partitions"),
        Option("start", Enum("earliest", "latest"), "earliest",
               "where a partition the group has no offset for is read from"),
        Option("tag", Str(), "kafka.${topic}", "tag of the events; ${topic} is the record's topic"),
        Option("format", Format("json", "msgpack"), "json",
               "each record's value: json (an object, or a list of them), msgpack (a map), or a "
               "parser by name or map (nginx, logfmt, {type: regex, pattern: ...}); see docs/parsers.md"),
        Option("key_field", Str(), None, "put the record's key (as text) in this field"),
        Option("topic_field", Str(), None, "put the record's topic in this field"),
        Option("partition_field", Str(), None, "put the record's partition in this field"),
        Option("offset_field", Str(), None, "put the record's offset in this field"),
        Option("headers_field", Str(), None, "put the record's headers (a map of text) in this field"),
        Option("max_batch", Int(min=1), 10000, "most records read into one batch"),
        Option("session_timeout", Duration(min=1), 45.0,
               "a member silent this long (killed) loses its partitions to the others"),
    )

    @classmethod
    def fields(cls, conf, upstream, check):
        check_client(check)
        return None

    def __init__(self, ctx, conf):
        super().__init__(ctx, conf)
        self.topics = [conf.topics] if isinstance(conf.topics, str) else list(conf.topics)
        self.parser = None if conf.format in ("json", "msgpack") else build(conf.format, ctx)
        self.consumer: Any = None
        self._lock = threading.Lock()
        #: partitions assigned now -> their generation: an ack of an earlier one is not committed
        self._generation: dict[TP, int] = {}
        self._generations = 0
        #: partition -> the next offset to read, of what is delivered (what a commit says)
        self._delivered: dict[TP, int] = {}
        self._order = InOrder(self._commit)
        self._eof: set[TP] = set()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"kafka {ctx.id}")
        self._closing: asyncio.Task[None] | None = None
        self._tags: dict[str, str] = {}
        #: json records as they are, nothing added: the one-loop way (_plain_json)
        self.plain = self.parser is None and conf.format == "json" and not (
            conf.key_field or conf.topic_field or conf.partition_field or conf.offset_field or conf.headers_field)

    def _config(self) -> dict[str, Any]:
        c = self.conf
        return {
            **client_config(c, f"pipeline-{self.ctx.id}", self._down),
            "group.id": c.group_id, "auto.offset.reset": c.start,
            # offsets move only by _commit: after delivery
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "session.timeout.ms": int(c.session_timeout * 1000),
            # a third of the session, as Kafka advises, and never past librdkafka's 3 s
            "heartbeat.interval.ms": int(min(c.session_timeout * 1000 / 3, 3000)),
            "enable.partition.eof": self.ctx.once,
            # librdkafka prefetches up to 64 MiB by default, beside what our buffers hold:
            # 16 MiB (bench_kafka, 1M records) took the peak RSS from 163 to 102 MiB, the
            # records/s within this machine's noise
            "queued.max.messages.kbytes": 16384,
            "statistics.interval.ms": 1000, "stats_cb": self._stats,
            **c.librdkafka,
        }

    async def start(self) -> None:
        from confluent_kafka import Consumer

        self.loop = asyncio.get_running_loop()
        self.consumer = Consumer(self._config())
        self.consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked,
                                on_lost=self._lost)

    # -- rebalances: called by librdkafka inside consume(), in the consumer's thread

    def _assigned(self, consumer: Any, partitions: list[Any]) -> None:
        with self._lock:
            for p in partitions:
                self._generations += 1
                self._generation[(p.topic, p.partition)] = self._generations

    def _revoked(self, consumer: Any, partitions: list[Any]) -> None:
        """Commit what was delivered of the partitions taken away; forget the rest."""
        from confluent_kafka import KafkaException, TopicPartition

        with self._lock:
            offsets = [TopicPartition(p.topic, p.partition, self._delivered.pop((p.topic, p.partition)))
                       for p in partitions if (p.topic, p.partition) in self._delivered]
            for p in partitions:
                self._generation.pop((p.topic, p.partition), None)
                self._eof.discard((p.topic, p.partition))
        if offsets:
            # asynchronous: librdkafka sends it before it leaves the partitions; a commit that
            # waited here, inside the rebalance, would wait for the rebalance
            try:
                consumer.commit(offsets=offsets, asynchronous=True)
            except KafkaException as e:  # the group moved on already: the new owner reads them again
                self.ctx.log.warning("offsets of revoked partitions not committed: %s", e.args[0].str())

    def _lost(self, consumer: Any, partitions: list[Any]) -> None:
        with self._lock:  # taken from us already: nothing of them may be committed
            for p in partitions:
                key = (p.topic, p.partition)
                self._generation.pop(key, None)
                self._delivered.pop(key, None)
                self._eof.discard(key)

    def _commit(self, read: dict[TP, tuple[int, int]]) -> None:
        """A batch is delivered (acks in order): commit its partitions' next offsets, of
        those still ours in the generation it was read in."""
        from confluent_kafka import TopicPartition

        with self._lock:
            offsets = []
            for tp, (generation, offset) in read.items():
                if self._generation.get(tp) == generation:
                    self._delivered[tp] = offset + 1
                    offsets.append(TopicPartition(tp[0], tp[1], offset + 1))
            if offsets:
                self.consumer.commit(offsets=offsets, asynchronous=True)

    # -- figures and errors from librdkafka, also in the consumer's thread

    def _stats(self, text: str) -> None:
        stats = orjson.loads(text)
        lag: dict[tuple[str, ...], float] = {}  # (topic, partition) -> records behind
        for topic, t in stats.get("topics", {}).items():
            for partition, p in t.get("partitions", {}).items():
                end, committed = p.get("hi_offset", -1), p.get("committed_offset", -1)
                if (topic, int(partition)) in self._generation and end >= 0:
                    # before the group's first commit, all that the partition holds is behind
                    lag[(topic, partition)] = end - (committed if committed >= 0 else max(p.get("lo_offset", 0), 0))
        self.ctx.gauges["consumer_lag"] = lag

    def _down(self, why: str) -> None:
        self.loop.call_soon_threadsafe(self.ctx.health, "brokers", False, why)

    # -- reading

    async def run(self, emit: Emit) -> None:
        from confluent_kafka import KafkaError

        loop, consumer = self.loop, self.consumer
        while True:
            messages = await loop.run_in_executor(self._thread, consumer.consume, self.conf.max_batch, 0.2)
            read: dict[TP, tuple[int, int]] = {}
            with self._lock:
                generation = dict(self._generation)
            taken = []
            for m in messages:
                error = m.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        self._eof.add((m.topic(), m.partition()))
                    else:
                        self.ctx.health("consume", False, f"kafka: {error.str()}")
                    continue
                tp = (m.topic(), m.partition())
                gen = generation.get(tp)
                if gen is None:  # read before a revoke that came in the same consume()
                    continue
                read[tp] = (gen, m.offset())
                taken.append((m, m.value() or b""))
            self.ctx.counters["bytes_in"] += sum(len(v) for _, v in taken)
            events = self._plain_json(taken) if self.plain else [e for m, v in taken for e in self._events(m, v)]
            if read:
                self.ctx.health("brokers", True, "kafka: the brokers answer again")
                ack = self._order.ack(read)
                await emit(events, ack)
                ack.release()
            if self.ctx.once and self._generation and self._eof >= set(self._generation):
                return

    def _tag(self, topic: str) -> str:
        tag = self._tags.get(topic)
        if tag is None:
            tag = self._tags[topic] = self.tag.replace("${topic}", topic)
        return tag

    def _plain_json(self, taken: list[tuple[Any, bytes]]) -> Batch:
        """json_records' way, in one loop for the batch: a Python call per record cost as much
        as reading it (bench_kafka); what the fast way refuses takes _events'."""
        fast = not has_long_digits(b"".join(v for _, v in taken))
        loads, deep = orjson.loads, MAX_DEPTH
        events: Batch = []
        topic, tag = None, ""
        for m, value in taken:
            if m.topic() != topic:
                topic = m.topic()
                tag = self._tag(topic)
            if fast and value.count(b"{") + value.count(b"[") <= deep:
                try:
                    doc = loads(value)
                except orjson.JSONDecodeError:
                    doc = None
                if type(doc) is dict:
                    kind, stamp = m.timestamp()
                    events.append((tag, stamp * 1_000_000 if kind and stamp > 0 else now_ns(), doc))
                    continue
            events += self._events(m, value)
        return events

    def _events(self, m: Any, value: bytes) -> Batch:
        c = self.conf
        tag = self._tag(m.topic())
        kind, stamp = m.timestamp()
        t = stamp * 1_000_000 if kind and stamp > 0 else now_ns()
        try:
            if self.parser is not None:
                events = self.parser.parse_lines([value.decode("utf-8", "replace")], tag, m.topic())
            elif c.format == "json":
                events = [(tag, t, r) for r in json_records(value)]
            else:
                events = [(tag, t, msgpack_record(value))]
        except DecodeError as e:
            self.ctx.error(f"not {c.format}: {e}", origin=f"{m.topic()}/{m.partition()}@{m.offset()}", data=value)
            return []
        if c.key_field or c.topic_field or c.partition_field or c.offset_field or c.headers_field:
            extra: dict[str, Any] = {}
            if c.key_field:
                key = m.key()
                extra[c.key_field] = None if key is None else key.decode("utf-8", "replace")
            if c.topic_field:
                extra[c.topic_field] = m.topic()
            if c.partition_field:
                extra[c.partition_field] = m.partition()
            if c.offset_field:
                extra[c.offset_field] = m.offset()
            if c.headers_field:
                extra[c.headers_field] = {k: None if v is None else v.decode("utf-8", "replace")
                                          for k, v in m.headers() or ()}
            events = [(tag, t, r | extra) for tag, t, r in events]
        return events

    async def stop(self) -> None:
        # the sinks drain after this: what they deliver then is still committed, and the
        # consumer leaves the group once nothing is on its way (or the process ends)
        self._closing = asyncio.get_running_loop().create_task(self._close())

    async def _close(self) -> None:
        try:
            while self._order.pending:
                await asyncio.sleep(0.05)
        finally:
            with self._lock:
                self._generation.clear()  # an ack after this commits nothing
            await asyncio.get_running_loop().run_in_executor(self._thread, self.consumer.close)
            self._thread.shutdown(wait=False)


PLUGIN = KafkaSource
