""""This fixed it" for a machine and an error code: the confirmed fix goes first when the
same code comes back on the same machine, and only then. And the learned combiner's stem
feature (words both retrievers miss). Real node (DuckDB, LanceDB, the packaged embedder)
where the store is involved."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rae_edge import config
from rae_edge.memory.feedback import MemoryFeedback
from rae_edge.memory.ranking import (
    FEATURES,
    Candidate,
    Fusion,
    Weights,
    apply_feedback,
    features,
    fuse,
    profile,
    trigrams,
)
from rae_edge.node import EdgeNode
from rae_sync.domain import Incident, Machine, Verdict


@pytest.fixture()
def node(tmp_path: Path) -> Iterator[EdgeNode]:
    n = EdgeNode(config.load(None, data_dir=tmp_path))
    n.duck.upsert_machines([
        Machine(tenant_id="acme", id="PRESS-07", name="Press 7", qr_code="QR:PRESS-07"),
        Machine(tenant_id="acme", id="PRESS-08", name="Press 8", qr_code="QR:PRESS-08")])
    yield n
    n.close()


def _inc(i: int, machine: str, symptom: str, action: str) -> Incident:
    return Incident(tenant_id="acme", machine_id=machine, symptom=symptom, action=action,
                    occurred_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=i))


def test_confirmed_for_a_machine_and_code_first_for_that_pair_only(node: EdgeNode) -> None:
    leaks = [_inc(i, "PRESS-07", f"Hydraulic pressure drops, pump leaking oil, shift {i}",
                  "Tightened the pump pressure hose") for i in range(6)]
    # What fixed E201: text unlike the alarm's words, so similarity alone ranks it low.
    coil = _inc(10, "PRESS-07", "Ram slow to close", "Replaced the proportional valve coil")
    node.memory.add_incidents("acme", [*leaks, coil])

    def rank(q: str) -> int:
        hits = node.memory.search("acme", q, machine_id="PRESS-07", k=10).hits
        return [h.id for h in hits].index(coil.id)

    asked = "E201 hydraulic pressure drops"
    again = "E201 pump pressure low, oil leaking"  # the same code, other words
    other = "E305 pump pressure low, oil leaking"  # another code, the same words
    before = {q: rank(q) for q in (asked, again, other)}
    assert min(before.values()) > 2
    node.memory.feedback.record("acme", memory_id=coil.id, verdict=Verdict.FIXED,
                                author="ana", query=asked, machine_id="PRESS-07")
    v = node.memory.feedback.for_memories("acme", [coil.id])[coil.id]
    assert v.confirmations == 1 and v.codes == {("PRESS-07", "E201")}
    assert rank(asked) == 0 and rank(again) == 0
    # Another code: only the small lift of any confirmation, not first.
    assert rank(other) > 0


def test_code_key_needs_the_same_machine_and_code() -> None:
    confirmed = {"y": MemoryFeedback(1, {"p1"}, codes={("PRESS-07", "E201")})}

    def order(query: str, machine: str | None) -> list[str]:
        cands = [Candidate({"id": "x"}, 1.0), Candidate({"id": "y"}, 0.01),
                 Candidate({"id": "z"}, 0.9)]
        apply_feedback(cands, confirmed, None, Fusion(), profile(query), machine)
        return [str(c.row["id"]) for c in sorted(cands, key=lambda c: -c.score)]

    assert order("E201 ram slow", "PRESS-07") == ["y", "x", "z"]
    assert order("E201 ram slow", "PRESS-08") == ["x", "z", "y"]  # another machine
    assert order("E201 ram slow", None) == ["x", "z", "y"]  # no machine named
    assert order("E202 ram slow", "PRESS-07") == ["x", "z", "y"]  # another code
    assert order("ram slow", "PRESS-07") == ["x", "z", "y"]


def _row(i: str, dist: float, score: float, text: str) -> dict[str, object]:
    return {"id": i, "kind": "incident", "_distance": dist, "_score": score, "text": text}


def test_stem_share_reads_word_forms_the_retrievers_miss() -> None:
    lists = {"vector": [_row("a", 0.1, 0, "Replaced seal"),
                        _row("b", 0.2, 0, "Bearings replacement, seals")],
             "text": [_row("a", 0, 2.0, "Replaced seal")]}
    cands = fuse(lists, Weights("rrf"))
    x = features(cands, lists, {}, 0, "replacing bearing")
    assert x.shape == (2, len(FEATURES)) and FEATURES[7] == "query stems in the text"
    by_id = {c.row["id"]: row for c, row in zip(cands, x, strict=True)}
    assert by_id["b"][7] == pytest.approx(1.0)  # "repla", "beari"
    assert by_id["a"][7] == pytest.approx(0.5)  # "repla" only
    assert features(cands, lists, {}, 0)[:, 7].tolist() == [0.0, 0.0]  # no query
    # A weight on it alone reorders; the default combiner weighs it up.
    lean = Weights("learned", coef=(0, 0, 0, 0, 0, 0, 0, 5.0, 0))
    assert [c.row["id"] for c in fuse(lists, lean, query="replacing bearing")] == ["b", "a"]
    assert Fusion().plain.coef[7] > 0


def test_trigram_share_reads_misspellings_and_abbreviations() -> None:
    lists = {"vector": [_row("a", 0.1, 0, "Pump noisy"),
                        _row("b", 0.2, 0, "brng replcd on pump"),
                        _row("c", 0.3, 0, "")]}
    cands = fuse(lists, Weights("rrf"))
    assert FEATURES[8] == "query trigrams in the text"
    assert trigrams("Brg!") == {" br", "brg", "rg "} and trigrams(" ,. ") == set()
    x = features(cands, lists, {}, 0, "bearing replaced")
    by_id = {c.row["id"]: row for c, row in zip(cands, x, strict=True)}
    # " be", "bea", "ear", "ari", "rin", "ing", "ng ", "g r", " re", "rep", "epl", "pla",
    # "lac", "ace", "ced", "ed ": b has "ng ", "g r", " re", "rep", "epl" (5 of 16); a, c
    # none. Neither b's words nor their 5-letter stems match the query's.
    assert by_id["b"][8] == pytest.approx(5 / 16) and by_id["b"][7] == 0.0
    assert by_id["a"][8] == 0.0 and by_id["c"][8] == 0.0
    assert features(cands, lists, {}, 0)[:, 8].tolist() == [0.0, 0.0, 0.0]  # no query
    lean = Weights("learned", coef=(0, 0, 0, 0, 0, 0, 0, 0, 5.0))
    assert [c.row["id"] for c in fuse(lists, lean, query="bearing replaced")] == ["b", "a", "c"]
    assert Fusion().plain.coef[8] > 0
