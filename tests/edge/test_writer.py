"""The writer's outbox: typed messages, validated when written (a bad one fails the write
and stores nothing), read back by the sync agent's codec as the same message; with sync
off nothing is queued; one rule decides it (``EdgeSettings.sync_on``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.store.outbox import OutboxMessage, OutboxRefusedError, payload_of
from rae_edge.sync_agent.codec import message_for
from rae_edge.write import STEPS, CorrectionFacts, IncidentFacts, WriteStep
from rae_sync.domain import AuditEntry, Correction, Feedback, Incident, Machine, Verdict
from rae_sync.messages import (
    AuditEntryMsg,
    CorrectionMsg,
    DriftAlertMsg,
    FeedbackMsg,
    IncidentMsg,
)

T = "acme"


def _node(tmp_path: Path, **sync: object) -> EdgeNode:
    node = EdgeNode(config.load(None, data_dir=tmp_path / "n", node={"tenant_id": T},
                                sync=sync or None))
    node.duck.upsert_machines([Machine(tenant_id=T, id="M1", name="M1", qr_code="QR-M1")])
    return node


def _correction(text: str = "the sensor plug was loose") -> Correction:
    return Correction(tenant_id=T, machine_id="M1", text=text, author="ana",
                      origin_node="node-1")


def test_sync_on_is_one_rule() -> None:
    def on(**sync: object) -> bool:
        return config.load(None, sync=sync or None).sync_on

    assert not on()
    assert on(mqtt_url="mqtt://127.0.0.1:1883")
    assert on(enroll_file="/etc/rae/node.identity.json")  # the broker URL is inside it


def test_every_outbox_message_reads_back_as_itself() -> None:
    inc = Incident(tenant_id=T, machine_id="M1", occurred_at=datetime(2026, 1, 2, tzinfo=UTC),
                   error_code="E1", symptom="jams")
    c = _correction()
    entry = AuditEntry(tenant_id=T, seq=1, at=datetime(2026, 1, 2, tzinfo=UTC), actor="a",
                       action="GET /x", resource="", memory_ids=("m",), prev_hash="0" * 64,
                       hash="1" * 64)
    msgs: list[OutboxMessage] = [
        IncidentMsg(incident=inc),
        CorrectionMsg(correction=c.model_copy(update={"hlc": "1767312000000-000001"})),
        AuditEntryMsg(entry=entry),
        DriftAlertMsg(id="drift_x", tenant_id=T, error_code="E1", status="open",
                      summary="s", machine_ids=("M1", "M2"), correction_ids=(c.id,)),
        FeedbackMsg(feedback=Feedback(tenant_id=T, memory_id=inc.id, verdict=Verdict.FIXED,
                                      author="a", origin_node="plant-1/node-1"))]
    for m in msgs:
        assert message_for(str(m.TYPE), payload_of(m), "unused") == m


def test_a_bad_message_fails_the_write_and_stores_nothing(tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class BrokenCorrections(CorrectionFacts):
        """A fact kind whose message skipped validation (``model_construct``)."""

        def messages(self, stored: Sequence[Correction]) -> list[OutboxMessage]:
            bad = Correction.model_construct(**{**stored[0].__dict__, "tenant_id": "no spaces!"})
            return [CorrectionMsg.model_construct(correction=bad, origin=None)]

    node = _node(tmp_path, mqtt_url="mqtt://127.0.0.1:9")
    try:
        c = _correction()
        with pytest.raises(OutboxRefusedError, match="tenant_id"):
            node.writer.write(BrokenCorrections(index_it=False), [c], "typed")
        assert node.duck.query("SELECT count(*) FROM corrections")[0][0] == 0
        assert node.duck.outbox_depth() == 0
    finally:
        node.close()


def test_sync_off_queues_nothing_and_on_queues_typed_rows(tmp_path: Path) -> None:
    inc = Incident(tenant_id=T, machine_id="M1", occurred_at=datetime(2026, 1, 2, tzinfo=UTC),
                   error_code="E1", symptom="jams")
    for sync, queued in (({}, 0), ({"mqtt_url": "mqtt://127.0.0.1:9"}, 2)):
        node = _node(tmp_path / str(queued), **sync)
        steps: list[WriteStep] = []
        node.writer.observe(steps.append)
        try:
            node.writer.write(IncidentFacts(), [inc, inc], "api")  # a repeat is stored once
            node.writer.write(CorrectionFacts(), [_correction()], "typed")
            rows = node.duck.outbox_peek(10)
        finally:
            node.close()
        assert [k for _, _, k, _ in rows] == ["incident", "correction"][:queued]
        assert [m.incident.id for m in (IncidentMsg(incident=Incident(**p))
                                        for _, _, k, p in rows if k == "incident")] == \
            [inc.id][:queued]
        assert [s.step for s in steps] == list(STEPS) * 2
        assert [(s.fact, s.step, s.count) for s in steps if s.step in ("store", "outbox")] == [
            ("incident", "store", 1), ("incident", "outbox", queued // 2),
            ("correction", "store", 1), ("correction", "outbox", queued // 2)]


def test_a_batch_write_runs_the_same_steps_with_one_push_transaction(tmp_path: Path,
                                                                    ) -> None:
    """A batch (corrections from other plants, as the down applier writes them): the
    steps of every write in their order, each new correction stored and pushed once (a
    repeat in the batch and one stored before are not), the pushes of the batch in one
    transaction (consecutive cursors, one ``created_at``)."""
    from rae_edge.sync_agent.down_apply import RemoteCorrections
    from rae_sync.messages import NodeRef

    node = _node(tmp_path, mqtt_url="mqtt://127.0.0.1:9")
    steps: list[WriteStep] = []
    node.writer.observe(steps.append)
    origin = NodeRef(tenant_id=T, site_id="plant-2", node_id="node-7")
    made = [_correction(f"belt {i} re-tensioned") for i in range(50)]
    try:
        node.writer.write(CorrectionFacts(to_outbox=False, index_it=False), made[:1], "remote")
        stored = node.writer.write(
            RemoteCorrections(origins={c.id: origin for c in made}, index_it=False),
            [*made, made[3]], "remote")
        ids = [str(r[0]) for r in node.duck.query("SELECT id FROM corrections")]
        pushes = node.duck.query("SELECT seq, created_at, payload FROM push_messages "
                                 "WHERE type = 'correction' ORDER BY seq")
        outbox = node.duck.outbox_depth()
    finally:
        node.close()
    assert [c.id for c in stored] == [c.id for c in made[1:]]
    assert Counter(ids) == Counter(c.id for c in made), "each once"
    batch = pushes[1:]
    assert Counter(json.loads(p)["correction"]["id"] for *_, p in pushes) == \
        Counter(c.id for c in made), "each pushed once"
    assert [s for s, *_ in batch] == list(range(batch[0][0], batch[0][0] + 49))
    assert len({at for _, at, _ in batch}) == 1, "one push transaction"
    assert all(json.loads(p)["origin"]["site_id"] == "plant-2" for *_, p in batch)
    assert [s.step for s in steps] == list(STEPS) * 2
    assert outbox == 0, "a correction from another plant is not queued again"
