"""The kafka sink against a real Apache Kafka broker (tests/kafka_peer.py), read back with kcat.

Numbered lines are counted end to end: every number must be in the topic; a number twice is
a duplicate, allowed only after a kill (at-least-once)."""

from __future__ import annotations

import json
import os
import uuid

from api_peers import get
from helpers import free_port, run_pipeline, start_pipeline, wait_for
from tail_peers import Writer, pause

from pipeline.api.client import Client
from pipeline.cli.top import View


def _topic(kafka, partitions: int = 1, **config: str) -> str:
    return kafka.create_topic(f"t-{uuid.uuid4().hex[:10]}", partitions, **config)


def _producer_queue(api: int) -> float:
    metrics = get(api, "/metrics")[1].decode()
    return sum(float(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith("pipeline_kafka_producer_queue{"))


def _numbers(kafka, topic: str) -> list[int]:
    return [int(json.loads(v)["message"].split()[0]) for v in kafka.kcat_consume(topic)]


def test_tail_to_kafka_loses_no_line_through_broker_and_pipeline_kills(kafka, tmp_path):
    topic = _topic(kafka, 3)
    log = tmp_path / "app.log"
    conf = tmp_path / "tail-kafka.yaml"
    api = free_port()
    conf.write_text(
        f"state_dir: {tmp_path / 'state'}\napi: {{address: 127.0.0.1:{api}}}\n"
        f"sources:\n  t: {{type: tail, path: {log}, read_from_head: true, refresh_interval: 0.3s}}\n"
        f"sinks:\n  k: {{type: kafka, inputs: [t], brokers: {kafka.bootstrap}, topic: {topic}}}\n")
    writer = Writer(log, rate=400)
    pipeline = start_pipeline("run", str(conf))
    try:
        assert wait_for(lambda: len(kafka.kcat_consume(topic)) > 400, timeout=30), pipeline.stderr
        before = _numbers(kafka, topic)
        # no kill yet: each line once
        assert len(before) == len(set(before)), "duplicates without a kill"

        kafka.restart_after(1.0)  # the broker SIGKILLed mid-stream, back ~4 s later
        pause()
        # the broker SIGKILLed again, and the pipeline while its lines wait in librdkafka's
        # queue: had a line's position moved before the broker acked it, it would be lost
        kafka.kill()
        # what waits for the broker shows in /metrics, and in top beside the buffer
        assert wait_for(lambda: _producer_queue(api) > 0, timeout=10)
        view = View(Client(f"127.0.0.1:{api}"))
        view.refresh()
        assert " q" in next(line for line in view.lines(80, 24) if line.startswith("k ")), view.lines(80, 24)
        pause(0.5, 1.0)
        pipeline.kill()
        pipeline.wait()
        kafka.start()
        pipeline = start_pipeline("run", str(conf))
        pause()
        n = writer.stop()

        ok = wait_for(lambda: set(range(n)) <= set(_numbers(kafka, topic)), timeout=60, step=0.5)
        got = _numbers(kafka, topic)
        missing = sorted(set(range(n)) - set(got))
        assert ok, f"{len(missing)} of {n} lines lost, e.g. {missing[:10]}"
        print(f"{n} lines, {len(got) - len(set(got))} duplicates after a broker and a pipeline SIGKILL")
        assert set(got) == set(range(n))
    finally:
        writer.proc.kill()
        pipeline.terminate()
        _, err = pipeline.communicate(timeout=30)
    assert pipeline.returncode == 0, err.decode()


def test_a_record_the_broker_refuses_goes_to_errors_with_its_reason_and_its_neighbours_are_delivered(
        kafka, tmp_path):
    # topics of 1 MiB max.message.bytes: one producer is allowed to send 10 MB (the broker
    # refuses), the other stops at librdkafka's own 1 MB limit (refused before sending)
    broker_says, client_says = _topic(kafka, **{"max.message.bytes": "1048576"}), _topic(kafka)
    errors = tmp_path / "errors.jsonl"
    conf = tmp_path / "big.yaml"
    conf.write_text(
        "sources:\n  in: {type: stdin, max_line_bytes: 8MiB}\n"
        "sinks:\n"
        f"  big: {{type: kafka, inputs: [in], brokers: {kafka.bootstrap}, topic: {broker_says},\n"
        "         librdkafka: {message.max.bytes: 10000000}}\n"
        f"  small: {{type: kafka, inputs: [in], brokers: {kafka.bootstrap}, topic: {client_says}}}\n"
        f"  rejects: {{type: file, inputs: [_errors], path: {errors}}}\n")
    huge = os.urandom(1024 * 1024).hex()  # 2 MB that no compression shrinks
    lines = [{"n": 1}, {"n": 2, "pad": huge}, {"n": 3}]
    done = run_pipeline("run", "--once", str(conf), input=b"".join(json.dumps(x).encode() + b"\n" for x in lines))
    assert done.returncode == 0, done.stderr.decode()
    for topic in (broker_says, client_says):
        assert [json.loads(v)["n"] for v in kafka.kcat_consume(topic)] == [1, 3]
    rejected = [json.loads(line) for line in errors.read_text().splitlines()]
    by_sink = {r["component"]: r for r in rejected}
    assert sorted(by_sink) == ["big", "small"], rejected
    assert "Broker: Message size too large" in by_sink["big"]["error"]
    assert "librdkafka refused it before sending: Unable to produce message: Broker: Message size too large" \
        in by_sink["small"]["error"]
    assert all(r["kind"] == "poison_record" and "'n': 2" in r["sample"] for r in rejected)


def test_topic_from_tag_and_record_kept_a_valid_name_with_key_and_headers(kafka, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    web, api = (kafka.create_topic(f"logs.{suffix}.{name}") for name in ("app_web_1", "api"))
    conf = tmp_path / "named.yaml"
    conf.write_text(
        "sources:\n  in: {type: stdin, tag: 'app/web 1'}\n"
        "sinks:\n"
        f"  by_tag: {{type: kafka, inputs: [in], brokers: {kafka.bootstrap}, topic: 'logs.{suffix}.${{tag}}',\n"
        "            key: user.id, headers: [tag, time]}\n"
        f"  by_field: {{type: kafka, inputs: [in], brokers: {kafka.bootstrap}, topic: 'logs.{suffix}.${{record.svc}}'}}\n")
    done = run_pipeline("run", "--once", str(conf), input=b'{"svc": "api", "user": {"id": 7}}\n')
    assert done.returncode == 0, done.stderr.decode()
    [row] = kafka.kcat_consume(web, "-f", "%k|%h|%s\n")
    key, headers, value = row.decode().split("|", 2)
    assert key == "7" and json.loads(value) == {"svc": "api", "user": {"id": 7}}
    assert headers.startswith("tag=app/web 1,time=")
    assert [json.loads(v) for v in kafka.kcat_consume(api)] == [{"svc": "api", "user": {"id": 7}}]


def test_idempotence_without_acks_all_is_a_config_error(tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("sources:\n  in: {type: stdin}\n"
                    "sinks:\n  k: {type: kafka, inputs: [in], brokers: 127.0.0.1:9, topic: t, acks: leader}\n")
    done = run_pipeline("check", str(conf))
    assert done.returncode == 2
    assert b"sinks.k.acks: the idempotent producer needs acks: all" in done.stderr
