"""The mackerel codec: value names and graph definitions from one rule, checked with
mackerel-agent's matching (tests/mackerel_rules.py), for every kind of field."""

from __future__ import annotations

import json
import time
from collections import Counter

from mackerel_rules import uncovered, value_names

from pipeline.codecs.mackerel import KINDS, MAX_GAP, MackerelEncoder, mackerel_graphs
from pipeline.config import fields as kinds
from pipeline.config.fields import fields_of
from pipeline.metrics.rates import RateTracker

S = 1_000_000_000
#: now, whole seconds (state older than a day is not kept)
NOW = time.time_ns() // S * S


def test_every_kind_but_label_has_its_graph():
    assert set(KINDS) == set(kinds.KINDS) - {kinds.LABEL}
    assert len({(g.part, g.unit) for g in KINDS.values()}) == len({g.part for g in KINDS.values()})


def test_values_and_graphs_agree_for_every_kind_and_counters_are_increases():
    fields = fields_of([((f"k_{kind}",), kind) for kind in kinds.KINDS]
                       + [(("ports", "*", "queue"), kinds.INTEGER), (("workers.*.tx",), kinds.BYTES_COUNTER),
                          (("undeclared_kind",), None), (("id",), kinds.LABEL)], many=True)
    encoder = MackerelEncoder(fields, "app", ["id"], metrics=["extra"], diffs=RateTracker(Counter(), max_gap=MAX_GAP))
    graphs = json.loads(json.dumps(mackerel_graphs(fields, "app", ["id"], metrics=["extra"])))

    def record(n):
        return {"id": 7, **{f"k_{kind}": 10 * n for kind in kinds.KINDS}, "ports": {"80": {"queue": n}},
                "workers.0.tx": 1000 * n, "undeclared_kind": n, "extra": n, "not_told": n}
    first = encoder.encode([("t", NOW, record(1))])
    second = encoder.encode([("t", NOW + 30 * S, record(2))])
    names = value_names(first) + value_names(second)
    assert uncovered(names, graphs) == []
    got = dict(line.split("\t")[:2] for line in second.decode().splitlines())
    # a counter: +10 in 30 s is 20 a minute; bytes: +1000 in 30 s, 33.3 a second
    assert float(got["app.7.per_minute.k_counter"]) == 20.0
    assert float(got["app.7.workers.0.bytes_per_second.tx"]) == 1000 / 30
    assert got["app.7.bytes.k_bytes"] == "20" and got["app.7.ports.80.integer.queue"] == "2"
    assert got["app.7.undeclared_kind"] == got["app.7.extra"] == "2"
    # no increase before a second sample; labels and what the config does not tell: never
    assert not [n for n in value_names(first) if n.endswith(("counter", ".tx"))]
    assert {"app.7.per_minute.k_counter", "app.7.bytes_per_second.k_bytes_counter",
            "app.7.microseconds_per_second.k_time_counter"} <= set(value_names(second))
    assert not [n for n in names if n.endswith((".k_label", ".id", ".not_told"))]
    assert graphs["app.#.per_minute"]["unit"] == "integer" and graphs["app.#.bytes"]["unit"] == "bytes"
    # state between runs: a new encoder given the old one's goes on from its last values
    again = MackerelEncoder(fields, "app", ["id"], diffs=RateTracker(Counter(), max_gap=MAX_GAP))
    again.load_state(encoder.save_state())
    third = dict(line.split("\t")[:2] for line in again.encode([("t", NOW + 90 * S, record(4))]).decode().splitlines())
    assert float(third["app.7.per_minute.k_counter"]) == 20.0
