"""Structure found at ingest (codes, part numbers, components as fields) and the ranking
that uses it: exact codes kept in the top 3, query-type weights, verdicts. Real node
(DuckDB, LanceDB, the packaged embedder) where the store is involved."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from rae_edge import config
from rae_edge.ingest.structure import extract
from rae_edge.memory.feedback import MemoryFeedback
from rae_edge.memory.ranking import (
    FEATURES,
    Candidate,
    Fusion,
    Weights,
    apply_feedback,
    features,
    fuse,
    pin_exact,
)
from rae_edge.node import EdgeNode
from rae_sync.domain import Incident, Machine, Verdict


def test_extract_finds_codes_parts_and_components() -> None:
    s = extract("ALARM 3001 on press: replaced bearing P/N 6205-2RS, seals worn; "
                "pump S/N 88213-AX, 24V coil, 10MM bolt, CV-1203 valve, 12/03/2020")
    assert s.codes == ("ALM 3001",)
    assert s.parts == ("6205-2RS", "88213-AX", "CV-1203")
    assert s.components == ("bearing", "seal", "pump", "coil", "bolt", "valve")
    # Measurements, dates, decimals and words that merely contain "PN"/"SN" are no parts.
    assert extract("PNEUMATIC SNIFFLE 3961.3 at 24V and 3PH, 2X 10MM").parts == ()
    assert extract("E404: light curtain fault").exact == ("E404",)


@pytest.fixture()
def node(tmp_path: Path) -> Iterator[EdgeNode]:
    n = EdgeNode(config.load(None, data_dir=tmp_path))
    n.duck.upsert_machines([Machine(tenant_id="acme", id="PRESS-07", name="Press 7",
                                    qr_code="QR:PRESS-07")])
    yield n
    n.close()


def _inc(i: int, symptom: str, code: str | None = None, action: str | None = None) -> Incident:
    return Incident(tenant_id="acme", machine_id="PRESS-07", error_code=code,
                    occurred_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=i),
                    symptom=symptom, action=action)


def test_fields_stored_at_ingest_and_exact_code_kept_in_top_3(node: EdgeNode) -> None:
    leaks = [_inc(i, f"Hydraulic pump leaking oil at the seal, shift {i}",
                  action="Replaced the pump shaft seal") for i in range(30)]
    coded = _inc(40, "Ram stopped", code="E917", action="Reset the light curtain relay")
    serial = _inc(41, "Pump noisy", action="Replaced pump S/N 77410-QX with a spare")
    node.memory.add_incidents("acme", [*leaks, coded, serial])
    fields = node.memory.fields.of("acme", [coded.id, serial.id, leaks[0].id])
    assert fields[coded.id]["code"] == ["E917"]
    assert fields[serial.id] == {"part": ["77410-QX"], "component": ["pump"]}
    assert fields[leaks[0].id] == {"component": ["pump", "seal", "shaft"]}
    # Plain words that match the 30 leaks far better than the coded memory.
    for q, want in (("E917 hydraulic pump leaking oil at the seal", coded.id),
                    ("pump leaking oil seal 77410-QX", serial.id)):
        hits = node.memory.search("acme", q, machine_id="PRESS-07", k=10).hits
        assert want in [h.id for h in hits[:3]], [h.text for h in hits[:5]]
        # Without the exact retriever and the pin it is buried (what this guards against).
        text = node.memory.search("acme", q, machine_id="PRESS-07", k=40, mode="vector").hits
        assert want not in [h.id for h in text[:3]]
    # Another machine's memories never come in through the exact retriever.
    other = node.memory.search("acme", "E917", machine_id="LATHE-02", k=10).hits
    assert coded.id not in [h.id for h in other]


def _row(i: str, dist: float, score: float) -> dict[str, object]:
    return {"id": i, "kind": "incident", "_distance": dist, "_score": score}


def test_fusion_follows_the_query_type_and_verdicts() -> None:
    lists = {"vector": [_row("a", 0.1, 0), _row("b", 0.2, 0), _row("c", 0.5, 0)],
             "text": [_row("c", 0, 9.0), _row("b", 0, 5.0), _row("a", 0, 1.0)]}
    lean_vec = fuse(lists, Weights("score", 0.8, 0.2, 0.5))
    lean_text = fuse(lists, Weights("score", 0.2, 0.8, 0.5))
    assert lean_vec[0].row["id"] == "a"
    assert lean_text[0].row["id"] == "c"
    # A confirmed fix first among similar candidates; more plants, more weight.
    f = Fusion()
    cands = [Candidate({"id": "x"}, 1.0), Candidate({"id": "y"}, 1.0)]
    apply_feedback(cands, {"y": MemoryFeedback(2, {"p1", "p2"})}, None, f)
    assert cands[1].score == pytest.approx(1.0 + f.confirm_boost * np.log2(3) + f.plant_boost)
    # "Not relevant" only for a query like the one it was given for.
    q = np.array([1.0, 0.0], dtype=np.float32)
    near = MemoryFeedback(0, set(), [np.array([0.95, 0.31], dtype=np.float32)])
    far = MemoryFeedback(0, set(), [np.array([0.0, 1.0], dtype=np.float32)])
    cands = [Candidate({"id": "n"}, 1.0), Candidate({"id": "f"}, 1.0)]
    apply_feedback(cands, {"n": near, "f": far}, q, f)
    assert [c.score for c in cands] == [pytest.approx(f.reject_factor), 1.0]


def test_pin_keeps_rare_exact_matches_in_the_top_3_and_in_their_order() -> None:
    f = Fusion()
    cands = [Candidate({"id": str(i)}, 10.0 - i) for i in range(8)]
    cands[6].exact = frozenset({"E1"})
    cands[7].exact = frozenset({"E1"})
    ids = [c.row["id"] for c in pin_exact(cands, f)]
    assert ids[:3] == ["0", "6", "7"] and len(ids) == 8 and sorted(ids) == sorted("01234567")
    # Already in the top 3: nothing moves. A value on more than 3 memories is no key.
    top = [Candidate({"id": str(i)}, 10.0 - i) for i in range(5)]
    top[1].exact = frozenset({"E2"})
    assert [c.row["id"] for c in pin_exact(top, f)] == ["0", "1", "2", "3", "4"]
    common = [Candidate({"id": str(i)}, 10.0 - i, exact=frozenset({"P1"})) for i in range(5)]
    assert [c.row["id"] for c in pin_exact(common, f)] == ["0", "1", "2", "3", "4"]


def test_learned_fusion_scores_by_its_features() -> None:
    lists = {"vector": [_row("a", 0.1, 0), _row("b", 0.2, 0), _row("c", 0.5, 0)],
             "text": [_row("c", 0, 9.0), _row("b", 0, 5.0), _row("a", 0, 1.0)]}
    cands = fuse(lists, Weights("rrf"))
    x = features(cands, lists, {}, 0)
    assert x.shape == (3, len(FEATURES))
    by_id = {c.row["id"]: row for c, row in zip(cands, x, strict=True)}
    assert by_id["a"][0] == pytest.approx(0.9) and by_id["c"][3] == pytest.approx(1.0)
    lean_vec = fuse(lists, Weights("learned", coef=(5.0, 0, 0, 0, 0, 0, 0, 0, 0)))
    lean_text = fuse(lists, Weights("learned", coef=(0, 0, 0, 5.0, 0, 0, 0, 0, 0)))
    assert [c.row["id"] for c in lean_vec] == ["a", "b", "c"]
    assert [c.row["id"] for c in lean_text] == ["c", "b", "a"]
    # exp of the logit over the best: the best scores 1, the others less, all positive.
    assert lean_vec[0].score == pytest.approx(1.0)
    assert lean_vec[2].score == pytest.approx(np.exp(5.0 * (0.5 - 0.9)))


def test_confirmation_puts_a_close_fix_first_for_queries_like_its_own() -> None:
    f = replace(Fusion(), confirm_floor=0.1)  # similarity promotion on (default: off)
    asked = np.array([1.0, 0.0], dtype=np.float32)  # the query the fix was confirmed for
    confirmed = {"y": MemoryFeedback(1, {"p1"}, [], [asked])}

    def order(q: np.ndarray | None, y_exact: frozenset[str] = frozenset(),
              fusion: Fusion = f) -> list[str]:
        cands = [Candidate({"id": "x"}, 1.0), Candidate({"id": "y"}, 0.4, exact=y_exact),
                 Candidate({"id": "z"}, 0.9)]
        apply_feedback(cands, confirmed, q, fusion)
        return [c.row["id"] for c in sorted(cands, key=lambda c: -c.score)]

    like = np.array([0.95, 0.31], dtype=np.float32)  # cosine 0.95 with the asked query
    unlike = np.array([0.0, 1.0], dtype=np.float32)
    assert order(like) == ["y", "x", "z"]
    assert order(like, fusion=Fusion()) == ["x", "z", "y"]  # the default: only the lift
    assert order(unlike) == ["x", "z", "y"]  # only the small lift for other queries
    # A query naming a code the confirmed memory carries (same machine: the prefilter),
    # with the default fusion.
    assert order(unlike, frozenset({"E917"}), Fusion()) == ["y", "x", "z"]
    assert order(None, frozenset({"E917"}), Fusion()) == ["y", "x", "z"]
    # Far below the best candidate it is not "similar": it is not pulled up.
    far = [Candidate({"id": "x"}, 1.0), Candidate({"id": "y"}, 0.4 * f.confirm_floor)]
    apply_feedback(far, confirmed, like, f)
    assert far[1].score < far[0].score


def test_verdicts_through_the_node_change_order_for_like_queries_only(node: EdgeNode) -> None:
    twin_a = _inc(1, "Hydraulic pump leaking oil at the shaft seal",
                  action="Replaced the pump shaft seal")
    twin_b = _inc(2, "Hydraulic pump leaking oil at the shaft seal",
                  action="Replaced the pump shaft seal")
    hose = _inc(3, "Hydraulic pump leaking oil at the pressure hose",
                action="Tightened the pressure hose fitting on the pump")
    curtain = _inc(4, "Light curtain fault stops the ram", action="Cleaned the light curtain")
    node.memory.add_incidents("acme", [twin_a, twin_b, hose, curtain])
    pump_q = "hydraulic pump leaking oil"

    def ids(q: str, among: tuple[str, ...]) -> list[str]:
        hits = node.memory.search("acme", q, machine_id="PRESS-07", k=10).hits
        return [h.id for h in hits if h.id in among]

    # Two otherwise equal fixes: one confirmation (default fusion) puts it first.
    twins = (twin_a.id, twin_b.id)
    second = ids(pump_q, twins)[1]
    node.memory.feedback.record("acme", memory_id=second, verdict=Verdict.FIXED,
                                author="ana", query=pump_q, machine_id="PRESS-07")
    assert ids(pump_q, twins)[0] == second

    # Put first for queries like the confirmed one only (similarity promotion on; without
    # the small lift for any query, so an unlike query's order must not move at all).
    node.memory.searcher.fusion = replace(Fusion(), confirm_boost=0.0, confirm_floor=0.1)
    other_q = "oil leaking from hydraulic pump"  # like pump_q
    far_q = "ram stops, light curtain and pump"  # not like pump_q
    pair = (second, hose.id)
    before = ids(far_q, pair)
    assert ids(pump_q, pair)[0] == second and ids(other_q, pair)[0] == second
    node.memory.feedback.record("acme", memory_id=hose.id, verdict=Verdict.FIXED,
                                author="bo", query=pump_q, machine_id="PRESS-07")
    assert ids(far_q, pair) == before  # a query unlike the confirmed one: as before
    # "Not relevant" for one query lowers that hit for it and not for another query.
    first_far = ids(far_q, pair)[0]
    node.memory.feedback.record("acme", memory_id=first_far, verdict=Verdict.NOT_RELEVANT,
                                author="ana", query=far_q, machine_id="PRESS-07")
    assert ids(far_q, pair)[0] != first_far
    assert ids(pump_q, pair) == ids(other_q, pair) and len(ids(pump_q, pair)) == 2
