"""The kafka source against a real Apache Kafka broker (tests/kafka_peer.py): topics written by
kcat, numbered records counted end to end, consumer groups of real pipelines."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid

from api_peers import get, get_json
from helpers import ROOT, free_port, run_pipeline, start_pipeline, wait_for


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _records(n0: int, n1: int, keys: int = 6) -> bytes:
    """kcat -K: input, KEY:VALUE a line: numbered JSON records over `keys` keys."""
    return b"".join(b"k%d:{\"n\": %d, \"v\": %d}\n" % (i % keys, i, i % 7) for i in range(n0, n1))


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _committed(kafka, group: str, topic: str, partitions: int) -> list[int]:
    """The group's committed offset of each partition (-1001: none), asked of the broker."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    answer = admin.list_consumer_group_offsets([request])[group].result(30)
    return [tp.offset for tp in sorted(answer.topic_partitions, key=lambda tp: tp.partition)]


def _once(tmp_path, kafka, topic: str, group: str, out, extra: str = "") -> None:
    conf = tmp_path / "once.yaml"
    conf.write_text(
        "sources:\n"
        f"  k: {{type: kafka, brokers: {kafka.bootstrap}, topics: [{topic}], group_id: {group}{extra}}}\n"
        f"sinks:\n  out: {{type: file, inputs: [k], path: {out}, tag_key: tag}}\n")
    done = run_pipeline("run", "--once", str(conf), timeout=120)
    assert done.returncode == 0, done.stderr.decode()


def test_kcat_written_topic_to_file_every_record_once_and_the_next_run_only_what_is_new(kafka, tmp_path):
    topic, group = kafka.create_topic(_name("src"), 3), _name("g")
    kafka.kcat_produce(topic, _records(0, 3000), "-K:")
    out = tmp_path / "out.jsonl"
    fields = ", key_field: key, partition_field: partition, offset_field: offset"
    _once(tmp_path, kafka, topic, group, out, fields)
    rows = _rows(out)
    assert sorted(r["n"] for r in rows) == list(range(3000))  # every record, once
    assert all(r["key"] == f"k{r['n'] % 6}" and r["tag"] == f"kafka.{topic}" for r in rows)
    # a key keeps one partition, and each partition's offsets run 0, 1, 2, ... in order
    assert len({(r["key"], r["partition"]) for r in rows}) == 6
    for p in {r["partition"] for r in rows}:
        assert [r["offset"] for r in rows if r["partition"] == p] == list(range(sum(r["partition"] == p for r in rows)))
    assert sum(_committed(kafka, group, topic, 3)) == 3000

    # the group's offsets were committed: the next run reads only what came since
    kafka.kcat_produce(topic, _records(3000, 3200), "-K:")
    out.unlink()
    _once(tmp_path, kafka, topic, group, out)
    assert sorted(r["n"] for r in _rows(out)) == list(range(3000, 3200))


def test_offsets_are_committed_only_after_delivery_so_a_sigkill_loses_nothing(kafka, tmp_path):
    topic, group = kafka.create_topic(_name("held"), 2), _name("g")
    kafka.kcat_produce(topic, _records(0, 500), "-K:")
    api = free_port()
    conf = tmp_path / "stuck.yaml"
    # a sink that cannot deliver (nothing listens there): the records wait in its buffer
    conf.write_text(
        f"api: {{address: 127.0.0.1:{api}}}\n"
        f"sources:\n  k: {{type: kafka, brokers: {kafka.bootstrap}, topics: [{topic}], group_id: {group},\n"
        "      session_timeout: 2s}\n"
        f"sinks:\n  fwd: {{type: forward, inputs: [k], servers: [{{host: 127.0.0.1, port: {free_port()}}}]}}\n")
    stuck = start_pipeline("run", str(conf))
    try:
        def read_all() -> bool:
            _, doc = get_json(api, "/api/components")
            return {c["id"]: c for c in doc["components"]}["k"]["counters"].get("events_out") == 500
        assert wait_for(read_all, timeout=60), "the source did not read the topic"
        assert _committed(kafka, group, topic, 2) == [-1001, -1001]  # read, not delivered: not committed
        # /metrics: each partition's lag, all of it (nothing committed)
        assert wait_for(lambda: b'pipeline_kafka_consumer_lag{' in get(api, "/metrics")[1], timeout=10)
        metrics = get(api, "/metrics")[1].decode()
        lags = [line for line in metrics.splitlines() if line.startswith("pipeline_kafka_consumer_lag{")]
        assert len(lags) == 2 and sum(float(line.split()[-1]) for line in lags) == 500, lags
        assert all(f'topic="{topic}"' in line and 'partition="' in line for line in lags)
        # and `pipeline top` shows it in the source's row
        from pipeline.api.client import Client
        from pipeline.cli.top import View

        view = View(Client(f"127.0.0.1:{api}"))
        view.refresh()
        row = next(line for line in view.lines(80, 24) if line.startswith("k "))
        assert "lag 500" in row, row
    finally:
        stuck.kill()
        stuck.wait()

    out = tmp_path / "out.jsonl"
    _once(tmp_path, kafka, topic, group, out)
    assert sorted(r["n"] for r in _rows(out)) == list(range(500))
    assert sum(_committed(kafka, group, topic, 2)) == 500


class Feed:
    """kcat writing numbered keyed records as the test hands them over, acks=all."""

    def __init__(self, kafka, topic: str):
        self.proc = subprocess.Popen(["kcat", "-b", kafka.bootstrap, "-P", "-t", topic, "-K:", "-X", "acks=all"],
                                     stdin=subprocess.PIPE)
        self.n = 0

    def send(self, count: int) -> None:
        self.proc.stdin.write(_records(self.n, self.n + count))  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        self.n += count

    def close(self) -> int:
        self.proc.stdin.close()  # type: ignore[union-attr]
        assert self.proc.wait(60) == 0
        return self.n


class Member:
    """A `pipeline run` in the consumer group: kafka -> file, and (windows) per-key sums."""

    def __init__(self, tmp_path, kafka, topic: str, group: str, name: str, windows: bool = False,
                 once: bool = False):
        self.out = tmp_path / f"{name}.jsonl"
        self.windows = tmp_path / f"{name}-windows.jsonl"
        self.api = free_port()
        self.conf = tmp_path / f"{name}.yaml"
        aggregate = (
            "filters:\n  sums:\n    type: aggregate\n    inputs: [k]\n    window: 1s\n"
            "    group_by: [key]\n    metrics: {total: sum(n), records: count()}\n    time: arrival\n"
            "    flush_on_stop: true\n"
            f"sinks:\n  windows: {{type: file, inputs: [sums], path: {self.windows}}}\n") if windows else "sinks:\n"
        self.conf.write_text(
            f"api: {{address: 127.0.0.1:{self.api}}}\n"
            f"sources:\n  k: {{type: kafka, brokers: {kafka.bootstrap}, topics: [{topic}], group_id: {group},\n"
            "      session_timeout: 2s, key_field: key}\n"
            + aggregate + ("" if windows else f"  raw: {{type: file, inputs: [k], path: {self.out}}}\n"))
        if once:
            done = run_pipeline("run", "--once", str(self.conf), timeout=120)
            assert done.returncode == 0, done.stderr.decode()
        else:
            self.proc = start_pipeline("run", str(self.conf))

    def partitions(self) -> int:
        try:
            status, doc = get_json(self.api, "/api/components")
        except OSError:
            return -1
        assert status == 200, doc
        return len({c["id"]: c for c in doc["components"]}["k"]["gauges"].get("consumer_lag", {}))

    def stop(self) -> None:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err.decode()


def test_two_pipelines_in_one_group_split_six_partitions_and_one_takes_over_when_the_other_is_killed(
        kafka, tmp_path):
    topic, group = kafka.create_topic(_name("grp"), 6), _name("g")
    a, b = (Member(tmp_path, kafka, topic, group, name) for name in ("a", "b"))
    feed = Feed(kafka, topic)
    try:
        # each takes three of the six partitions
        assert wait_for(lambda: a.partitions() == 3 and b.partitions() == 3, timeout=60), \
            (a.partitions(), b.partitions())
        for step in range(30):
            feed.send(100)
            time.sleep(0.1)
            if step == 10:
                a.proc.kill()  # SIGKILL, whatever it read and did not deliver
        n = feed.close()
        assert wait_for(lambda: b.partitions() == 6, timeout=90)  # b has a's partitions now
        numbers = lambda: [r["n"] for r in _rows(a.out) + _rows(b.out)]  # noqa: E731
        ok = wait_for(lambda: set(numbers()) >= set(range(n)), timeout=60, step=0.5)
        missing = sorted(set(range(n)) - set(numbers()))
        assert ok, f"{len(missing)} of {n} records lost, e.g. {missing[:10]}"
        got = numbers()
        print(f"{n} records, {len(got) - len(set(got))} duplicates after one member was SIGKILLed")
    finally:
        a.proc.kill()
    b.stop()


def test_per_key_windows_of_a_group_that_rebalances_give_the_totals_of_one_pipeline(kafka, tmp_path):
    topic, group = kafka.create_topic(_name("win"), 6), _name("g")
    a, b = (Member(tmp_path, kafka, topic, group, name, windows=True) for name in ("a", "b"))
    feed = Feed(kafka, topic)
    assert wait_for(lambda: a.partitions() == 3 and b.partitions() == 3, timeout=60)
    for step in range(20):
        feed.send(100)
        time.sleep(0.1)
        if step == 8:
            a.stop()  # mid-stream: its partitions go to b from what it delivered
    n = feed.close()
    assert wait_for(lambda: b.partitions() == 6, timeout=90)
    b.stop()

    def totals(*paths) -> dict[str, tuple[int, int]]:
        out: dict[str, list[int]] = {}
        for row in (r for p in paths for r in _rows(p)):
            sums = out.setdefault(row["key"], [0, 0])
            sums[0] += row["total"]
            sums[1] += row["records"]
        return {k: (v[0], v[1]) for k, v in out.items()}

    # one pipeline, a group of its own, over the whole topic
    one = Member(tmp_path, kafka, topic, _name("one"), "one", windows=True, once=True)
    expected = {f"k{k}": (sum(range(k, n, 6)), len(range(k, n, 6))) for k in range(6)}
    assert totals(one.windows) == expected
    assert totals(a.windows, b.windows) == expected


def test_conf_examples_agents_to_kafka_to_an_aggregator_group_of_per_minute_windows(kafka, tmp_path):
    from uwsgi_peer import Uwsgi

    uwsgi = Uwsgi(tmp_path, str(tmp_path / "stats.sock"))
    topic = kafka.create_topic(_name("uwsgi.workers"), 6)
    env = {"KAFKA_BROKERS": kafka.bootstrap, "KAFKA_TOPIC": topic, "KAFKA_GROUP": _name("aggregators"),
           "UWSGI_STATS": f"unix://{tmp_path / 'stats.sock'}", "INTERVAL": "0.5s",
           "WINDOW": "1s", "LATENESS": "1s", "XDG_STATE_HOME": str(tmp_path / "state")}
    agent = start_pipeline("run", str(ROOT / "conf" / "kafka-agent.yaml"), env=env)
    aggregator = start_pipeline("run", str(ROOT / "conf" / "kafka-aggregator.yaml"), env=env)
    try:
        for _ in range(10):
            uwsgi.load(10)
            time.sleep(0.3)
        # the agent's records are in the topic, keyed by host, one record per worker a poll
        rows = [json.loads(v) for v in kafka.kcat_consume(topic)]
        assert {r["id"] for r in rows} == {1, 2} and {r["host"] for r in rows} == {socket.gethostname()}
        assert all("listen_queue" in r and "avg_rt" in r and "rss" in r for r in rows)
        time.sleep(2.5)  # the last second's window closes
    finally:
        agent.terminate()
        aggregator.terminate()
        out, err = aggregator.communicate(timeout=60)
        agent_err = agent.communicate(timeout=60)[1]
        uwsgi.stop()
    assert agent.returncode == 0, agent_err.decode()
    assert aggregator.returncode == 0, err.decode()
    windows = [json.loads(line) for line in out.splitlines()]
    assert windows and all(w["tag"] == "uwsgi.per_minute" for w in windows)
    assert {(w["host"], w["id"]) for w in windows} == {(socket.gethostname(), 1), (socket.gethostname(), 2)}
    assert all(w["window_end"] - w["window_start"] == 1 and w["samples"] >= 1 and w["rss_avg"] > 0
               for w in windows)


def test_a_value_that_is_not_json_goes_to_errors_and_a_list_gives_its_records(kafka, tmp_path):
    topic = kafka.create_topic(_name("bad"))
    kafka.kcat_produce(topic, b'{"n": 1}\nnot json\n[{"n": 2}, {"n": 3}]\n{"n": 4}\n')
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    conf = tmp_path / "bad.yaml"
    conf.write_text(
        f"sources:\n  k: {{type: kafka, brokers: {kafka.bootstrap}, topics: [{topic}], group_id: {_name('g')}}}\n"
        f"sinks:\n  out: {{type: file, inputs: [k], path: {out}}}\n"
        f"  rejects: {{type: file, inputs: [_errors], path: {errors}}}\n")
    done = run_pipeline("run", "--once", str(conf), timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert [r["n"] for r in _rows(out)] == [1, 2, 3, 4]
    [error] = _rows(errors)
    assert error["error"].startswith("not json") and error["origin"] == f"{topic}/0@1" and error["sample"] == "not json"
