"""A real Apache Kafka broker for the Kafka sink's and source's tests and bench/bench_kafka.py:
one KRaft node (broker and controller in one JVM) on 127.0.0.1, started from the jars
tests/kafka/pom.xml lists, with Debian's `kcat` as the independent client beside ours.

The jars live in $PIPELINE_KAFKA_JARS (default ~/.cache/pipeline-kafka); .ci/run fetches them.
One broker serves a whole test session: starting a JVM costs seconds, a topic nothing.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

JARS = Path(os.environ.get("PIPELINE_KAFKA_JARS") or Path.home() / ".cache" / "pipeline-kafka")
POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
FETCH = f"mvn -q -f {POM} dependency:copy-dependencies -DoutputDirectory={JARS}"

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# topics are made by the tests, with the partitions and limits each needs: a name the
# pipeline gets wrong must fail, not appear
auto.create.topics.enable=false
# a group's first member starts at once rather than waiting 3 s for others, and a killed
# member's partitions move after the 2 s session its pipeline asks for (the least is 6 s)
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
# a SIGKILLed node's old registration would block the restarted one for 9 s (the default
# session): the restart tests wait 2 s instead
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=2000
"""

#: C1 only and a small heap: the broker starts in ~3 s on a loaded machine instead of ~5, and
#: leaves memory to the rest; the benchmark passes its own flags (full JIT)
TEST_JVM = ("-Xmx512m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


class Unavailable(Exception):
    """The broker cannot run here: the reason is the skip message."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def classpath() -> str:
    if shutil.which("java") is None:
        raise Unavailable("no `java` (Debian: apt-get install default-jre-headless)")
    if not any(JARS.glob("kafka_2.13-4.*.jar")):
        raise Unavailable(f"no Kafka 4 jars in {JARS} (set PIPELINE_KAFKA_JARS, or fetch them: {FETCH})")
    return f"{JARS}/*"


def _cluster_id() -> str:
    """What `StorageTool random-uuid` prints (a UUID in unpadded URL-safe base64), without a
    JVM started for it."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


class KafkaBroker:
    def __init__(self, state: Path, jvm: tuple[str, ...] = TEST_JVM):
        self.state = state
        self.jvm = jvm
        self.port = _free_port()
        self.controller = _free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self._log_at = 0

    @property
    def log(self) -> Path:
        return self.state / "broker.log"

    def _java(self, main: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", classpath(), main, *args],
                              capture_output=True, text=True, timeout=timeout)

    def start(self) -> str:
        """Format the node's storage (first time) and start it; the bootstrap address."""
        cp = classpath()
        props = self.state / "server.properties"
        if not props.exists():
            self.state.mkdir(parents=True, exist_ok=True)
            props.write_text(SERVER_PROPERTIES.format(port=self.port, controller=self.controller,
                                                      data=self.state / "data"))
            formatted = self._java("kafka.tools.StorageTool", "format", "--standalone", "-t", _cluster_id(),
                                   "-c", str(props))
            if formatted.returncode:
                raise Unavailable(f"kafka StorageTool format failed: {formatted.stderr.strip()[-400:]}")
        self._log_at = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(["java", *self.jvm, "-cp", cp, "kafka.Kafka", str(props)],
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while b"Kafka Server started" not in self._new_log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self._new_log().decode(errors="replace")[-600:]
                self.kill()
                raise Unavailable(f"the Kafka broker did not start: {tail}")
            time.sleep(0.1)
        return self.bootstrap

    def _new_log(self) -> bytes:
        with open(self.log, "rb") as f:
            f.seek(self._log_at)
            return f.read()

    def kill(self) -> None:
        """SIGKILL: no flush, no controlled shutdown."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None

    def restart_after(self, seconds: float) -> None:
        self.kill()
        time.sleep(seconds)
        self.start()

    # -- topics, through the client library (the admin API), and records through kcat

    def create_topic(self, name: str, partitions: int = 1, **config: str) -> str:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(name, partitions, 1, config=config)], operation_timeout=30)
        futures[name].result(60)
        return name

    def kcat_produce(self, topic: str, lines: bytes, *args: str) -> None:
        """Each line one record (`-K` in args splits keys off), acks=all."""
        subprocess.run(["kcat", "-b", self.bootstrap, "-P", "-t", topic, "-X", "acks=all", *args],
                       input=lines, check=True, timeout=120, capture_output=True)

    def kcat_consume(self, topic: str, *args: str, timeout: float = 120) -> list[bytes]:
        """Every record of the topic from the start, one value a line (format in args)."""
        done = subprocess.run(["kcat", "-b", self.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
                               "-q", *args], capture_output=True, check=True, timeout=timeout)
        return done.stdout.splitlines()
