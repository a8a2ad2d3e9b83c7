"""Structure found at ingest (codes, part numbers, components as fields) and the ranking
that uses it: exact codes kept in the top 3, query-type weights, verdicts. Real node
(DuckDB, LanceDB, the packaged embedder) where the store is involved."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from rae_edge import config
from rae_edge.ingest.structure import extract
from rae_edge.memory.feedback import MemoryFeedback
from rae_edge.memory.ranking import Candidate, Fusion, Weights, apply_feedback, fuse, pin_exact
from rae_edge.node import EdgeNode
from rae_sync.domain import Incident, Machine


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
