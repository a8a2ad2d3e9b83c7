"""A bulk write of incidents: the pushes of one request find each incident's most similar
past one in one pass (the same answer as the one-by-one lookup), are bounded by
``MAX_ANNOUNCED`` and stored in one transaction; every incident is stored and indexed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rae_edge import config
from rae_edge.memory.service import MAX_ANNOUNCED
from rae_edge.node import EdgeNode
from rae_edge.write import WriteStep
from rae_sync.domain import Correction, Incident, Machine

T = "acme"
SYMPTOMS = ["hydraulic pump leaking at the seal", "conveyor belt slipping under load",
            "spindle bearing noisy and hot", "light curtain fault, ram stops mid-stroke",
            "coolant pressure low alarm", "servo drive overcurrent trip",
            "gearbox oil temperature high", "vacuum gripper drops parts"]
ACTIONS = ["replaced the seal", "tensioned the belt", "greased the bearing",
           "cleaned the sensor lens", "changed the filter", "reset the drive"]
BASE = datetime(2026, 3, 1, tzinfo=UTC)


def _inc(machine: str, i: int, hours: int) -> Incident:
    return Incident(tenant_id=T, machine_id=machine, occurred_at=BASE + timedelta(hours=hours),
                    error_code=f"E{100 + i % 5}" if i % 3 else None,
                    symptom=f"{SYMPTOMS[i % len(SYMPTOMS)]} ({i})",
                    action=ACTIONS[(i * 5) % len(ACTIONS)])


@pytest.fixture
def node(tmp_path: Path):  # type: ignore[no-untyped-def]
    n = EdgeNode(config.load(None, data_dir=tmp_path / "n", node={"tenant_id": T}))
    n.duck.upsert_machines([Machine(tenant_id=T, id=m, name=m, qr_code=f"QR-{m}")
                            for m in ("M1", "M2", "M3", "M4")])
    yield n
    n.close()


def test_similar_many_gives_the_one_by_one_answer(node: EdgeNode) -> None:
    history = [_inc(f"M{1 + i % 3}", i, 10 * i) for i in range(24)]
    node.memory.add_incidents(T, history)
    node.memory.record_correction(Correction(
        tenant_id=T, machine_id=history[4].machine_id, target_id=history[4].id,
        text="the seal was fine: the hose clamp was loose", author="ana",
        valid_from=BASE + timedelta(days=30)))
    batch = [_inc(f"M{1 + i % 3}", i, 10 * i + 5) for i in range(24, 36)]
    batch.append(_inc("M1", 3, -100))  # before every incident of its machine: none
    batch.append(_inc("M4", 1, 500))  # a machine without history: none
    again = _inc(history[4].machine_id, 4, 41)  # the amended one's words, an hour later
    batch.append(again)
    vectors = node.memory._embed_incidents(batch)
    many = node.memory.similar_many(batch, vectors)
    assert list(many) == [i.id for i in batch]
    for inc in batch:
        one = node.memory.similar(inc, vectors[inc.id])
        got = many[inc.id]
        if one is None:
            assert got is None, inc
            continue
        assert got is not None, inc
        assert (got.id, got.fix, got.superseded_by, got.action) == \
            (one.id, one.fix, one.superseded_by, one.action)
        assert got.similarity == pytest.approx(one.similarity, abs=2e-4)
    assert many[batch[-2].id] is None and many[batch[-3].id] is None
    amended = many[again.id]
    assert amended is not None and amended.id == history[4].id
    assert amended.fix == "the seal was fine: the hose clamp was loose"
    assert amended.action == history[4].action and amended.similarity == pytest.approx(1.0)
    assert sum(s is None for s in many.values()) == 2  # those two only


def test_a_bulk_write_pushes_at_most_max_announced_in_one_transaction(node: EdgeNode) -> None:
    node.memory.add_incidents(T, [_inc(f"M{1 + i % 4}", i, -100 - i) for i in range(8)])
    before = node.push.since(T, [], 0)
    steps: list[WriteStep] = []
    stop = node.writer.observe(steps.append)
    incs = [_inc(f"M{1 + i % 4}", i, i) for i in range(8, 8 + MAX_ANNOUNCED + 30)]
    ids, new = node.memory.add_incidents(T, incs)
    stop()
    assert ids == [i.id for i in incs] and len(new) == len(incs)
    pushed = node.push.since(T, [], before[-1].cursor)
    assert [m.type for m in pushed] == ["incident"] * MAX_ANNOUNCED
    assert [m.payload["incident"]["id"] for m in pushed] == [i.id for i in incs[:MAX_ANNOUNCED]]
    cursors = [m.cursor for m in pushed]
    assert cursors == list(range(cursors[0], cursors[0] + MAX_ANNOUNCED))
    # each with the most similar earlier incident of its machine (its history)
    for m in pushed:
        sim = m.payload["similar"]
        assert sim is not None and sim["machine_id"] == m.machine_id
        assert sim["occurred_at"] < m.payload["incident"]["occurred_at"]
    assert [(s.step, s.count) for s in steps if s.step in ("store", "push", "index")] == \
        [("store", len(incs)), ("push", MAX_ANNOUNCED), ("index", len(incs))]
    assert node.duck.query("SELECT count(*) FROM incidents")[0][0] == len(incs) + 8
    assert node.lance.count("kind = 'incident'") == len(incs) + 8
