"""What the Kafka sink and source share: the options that reach a cluster (brokers, TLS, SASL,
librdkafka's own properties), the client settings made of them, and which of the broker's
refusals are the record's fault.

The client is confluent-kafka (librdkafka), imported only by the plugins that use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..config.options import Bool, Enum, ListOf, MapOf, OneOf, Option, Str, Struct

TLS = Struct(
    Option("enabled", Bool(), True, "use TLS"),
    Option("ca", Str(), None, "CA file to verify the brokers (default: the system's)"),
    Option("cert", Str(), None, "client certificate file"),
    Option("key", Str(), None, "client key file"),
    Option("verify", Bool(), True, "verify the brokers' certificates and names"),
    name="tls",
)

SASL = Struct(
    Option("mechanism", Enum("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"), "PLAIN", "SASL mechanism"),
    Option("username", Str(), help="user name"),
    Option("password", Str(), help="password", secret=True),
    name="sasl",
)

CONNECTION_OPTIONS = (
    Option("brokers", OneOf(Str(), ListOf(Str())),
           help="bootstrap brokers, HOST:PORT (a list, or one string of them separated by commas)"),
    Option("tls", TLS, None, "TLS to the brokers: {enabled, ca, cert, key, verify}"),
    Option("sasl", SASL, None, "SASL authentication: {mechanism: PLAIN|SCRAM-SHA-256|SCRAM-SHA-512, "
           "username, password}"),
    Option("librdkafka", MapOf(Str(numbers=True)), {},
           "more librdkafka properties by their own names (its CONFIGURATION.md); they win over "
           "the options above", secret=True),
)

#: a topic name as Kafka takes it: these characters, at most 249 of them, not `.` or `..`
_TOPIC_BAD = re.compile(r"[^A-Za-z0-9._-]")


def topic_name(text: str) -> str | None:
    """`text` (a filled `${tag}` template) as a topic name: other characters become `_`, cut
    to 249; None if nothing is left."""
    name = _TOPIC_BAD.sub("_", text)[:249]
    if name in (".", ".."):
        return "_" * len(name)
    return name or None


def check_client(check: Any) -> None:
    """A config error, not a failure at start, where the client library is not installed."""
    import importlib.util

    if importlib.util.find_spec("confluent_kafka") is None:
        check.error("type", "needs the Kafka client confluent-kafka: pip install 'pipeline[kafka]'")


def client_config(conf: Any, client_id: str, on_down: Callable[[str], None]) -> dict[str, Any]:
    """librdkafka's properties for the options of CONNECTION_OPTIONS; `on_down(why)` is called
    (in librdkafka's thread) when every broker is down or the client failed for good."""

    def client_error(error: Any) -> None:
        from confluent_kafka import KafkaError

        if error.code() == KafkaError._ALL_BROKERS_DOWN or error.fatal():
            on_down(f"kafka: {error.str()}")

    brokers = conf.brokers if isinstance(conf.brokers, str) else ",".join(conf.brokers)
    out: dict[str, Any] = {"bootstrap.servers": brokers, "client.id": client_id,
                           # librdkafka's own lines would repeat each reconnect: its errors
                           # come through error_cb into the component's health instead
                           "log_level": 0, "error_cb": client_error}
    tls = conf.tls if conf.tls is not None and conf.tls.enabled else None
    sasl = conf.sasl
    out["security.protocol"] = ("SASL_" if sasl else "") + ("SSL" if tls else "PLAINTEXT")
    if tls is not None:
        if tls.ca:
            out["ssl.ca.location"] = tls.ca
        if tls.cert:
            out["ssl.certificate.location"] = tls.cert
        if tls.key:
            out["ssl.key.location"] = tls.key
        if not tls.verify:
            out["enable.ssl.certificate.verification"] = False
            out["ssl.endpoint.identification.algorithm"] = "none"
    if sasl is not None:
        out.update({"sasl.mechanism": sasl.mechanism, "sasl.username": sasl.username,
                    "sasl.password": sasl.password})
    out.update(conf.librdkafka)
    return out


def refused_for_good(error: Any) -> bool:
    """Whether a delivery error is the record's (too large, a topic that does not exist or
    may not be written, a timestamp the topic refuses): every retry would fail the same way.
    The rest (a broker down, a timeout) is the destination's, retried."""
    from confluent_kafka import KafkaError

    return error.code() in {
        KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.INVALID_MSG,
        KafkaError.INVALID_RECORD, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_TIMESTAMP,
        KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION, KafkaError.TOPIC_EXCEPTION,
        KafkaError.POLICY_VIOLATION, KafkaError._INVALID_ARG,
    }
