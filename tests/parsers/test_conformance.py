"""The parser tests of fluentd, Fluent Bit and Vector, each case written again as a fixture
(tests/fixtures/parsers/, SOURCE.txt names the files they come from), run through our parsers.
A case agrees, or `differs` for a reason listed in differences.yaml and in the "Coming from"
table of docs/parsers.md; a case that stops differing fails too, so the lists stay true."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import FIXTURES

from pipeline.config.options import Errors
from pipeline.engine.context import Context
from pipeline.parsers import Format, ParseError, build
from pipeline.plugin import load

CASES = FIXTURES / "parsers"
PEERS = ("fluentd", "fluent-bit", "vector")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "parsers.md"


def _load(name: str) -> Any:
    return yaml.safe_load((CASES / name).read_text(encoding="utf-8"))


DIFFERENCES: dict[str, str] = _load("differences.yaml")
ALL = [(peer, case) for peer in PEERS for case in _load(f"{peer}.yaml")["cases"]]


def _parser(spec: Any):
    spec = {"type": spec} if isinstance(spec, str) else dict(spec)
    names = {o.name for o in load("parser", spec["type"]).all_options()}
    if "timezone" in names:
        spec.setdefault("timezone", "UTC")
    problems = Errors()
    conf = Format().convert(spec, "format", problems, None)
    assert not problems, problems.lines()
    return build(conf, Context("conformance", "source"))


def _ns(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.replace("{year}", str(time.localtime().tm_year))
    whole, _, frac = text.removesuffix("Z").partition(".")
    offset = ""
    for sign in "+-":
        if sign in frac:
            frac, _, rest = frac.partition(sign)
            offset = sign + rest
    dt = datetime.fromisoformat(whole + (offset or "+00:00"))
    return int(dt.timestamp()) * 10**9 + int(frac.ljust(9, "0")[:9] or 0)


def _shape(record: dict | None) -> dict | None:
    """Null fields here are absent fields in a peer's record."""
    return None if record is None else {k: v for k, v in record.items() if v is not None}


@pytest.mark.parametrize("peer, case", ALL, ids=[f"{peer}:{case['id']}" for peer, case in ALL])
def test_case(peer, case):
    parser = _parser(case["format"])
    if "error" in case:
        with pytest.raises(ParseError, match=case["error"]):
            parser.parse(case["text"])
        return
    t, record = parser.parse(case["text"])
    assert (_shape(record), t) == (_shape(case["record"]), _ns(case["time"]))
    if "differs" in case:
        assert case["differs"] in DIFFERENCES, f"{case['differs']!r} is not in differences.yaml"
        theirs = (_shape(case.get("peer", case["record"])), _ns(case.get("peer_time", case["time"])))
        assert theirs != (_shape(record), t), "the peer's result is ours now: the case agrees"
    else:
        assert "peer" not in case and "peer_time" not in case


def test_every_difference_is_used_and_in_the_docs():
    used = {case["differs"] for _, case in ALL if "differs" in case}
    assert set(DIFFERENCES) == used
    docs = DOCS.read_text(encoding="utf-8")
    assert [key for key in DIFFERENCES if f"`{key}`" not in docs] == []
    differ = sum("differs" in case for _, case in ALL)
    said = f"{len(ALL)} cases: {len(ALL) - differ} give the same result, {differ} differ"
    assert said in " ".join(docs.split()), f"docs/parsers.md should say {said!r}"


def test_every_origin_file_is_named_in_source_txt():
    source = (CASES / "SOURCE.txt").read_text(encoding="utf-8")
    files = {case["from"].split()[0] for _, case in ALL}
    assert [f for f in sorted(files) if f not in source] == []
