"""Drift alerts: corrections on two machines amending incidents with an error code whose
manual section prescribes a step open one alert with the evidence; one machine does not."""

from __future__ import annotations

from datetime import UTC, datetime

from rae_edge.drift import monitor, open_alerts, prescribes_step
from rae_edge.node import EdgeNode
from rae_sync.domain import Correction, DocumentChunk, Incident, Machine, MemoryKind

T = "acme"


def _plant(node: EdgeNode) -> tuple[list[Incident], DocumentChunk]:
    node.duck.upsert_machines([Machine(tenant_id=T, id=m, name=m, qr_code=f"QR-{m}")
                               for m in ("P1", "P2", "P3")])
    incs = [Incident(tenant_id=T, machine_id=m, occurred_at=datetime(2024, 5, d, tzinfo=UTC),
                     error_code="E404", symptom="hydraulic pressure low, alarm E404",
                     action="replaced the pressure relief valve as the manual says")
            for m, d in (("P1", 1), ("P2", 2), ("P3", 3))]
    other = Incident(tenant_id=T, machine_id="P1", occurred_at=datetime(2024, 5, 4, tzinfo=UTC),
                     error_code="E7", symptom="belt slips", action="tightened belt")
    node.duck.insert_incidents([*incs, other])
    section = DocumentChunk(
        tenant_id=T, id="man_press_e404", document_id="doc_press", document_title="Press manual",
        section="7.3 Alarm E404", text="E404 low hydraulic pressure: 1. Replace the pressure "
        "relief valve. 2. Restart the pump.", error_codes=("E404",))
    node.indexer.index_incidents([*incs, other])
    node.indexer.index_chunks([section])
    return incs, section


def _correct(node: EdgeNode, inc: Incident, text: str) -> Correction:
    c = Correction(tenant_id=T, machine_id=inc.machine_id, text=text, author="tech",
                   target_id=inc.id)
    # The node's one write path: stored, queued when sync is on, indexed, pushed, and
    # drift recomputed (reading alerts never writes).
    node.memory.record_correction(c)
    return c


def test_prescribes_step() -> None:
    assert prescribes_step("1. Replace the valve")
    assert prescribes_step("Check the belt tension")
    assert not prescribes_step("E404 means the hydraulic pressure is low.")


def test_two_machines_contradicting_the_manual_open_one_alert(node: EdgeNode) -> None:
    incs, section = _plant(node)
    first = _correct(node, incs[0], "valve was fine: the pressure sensor connector was loose")
    assert open_alerts(node, T) == []  # one machine is an anecdote, not drift
    second = _correct(node, incs[1], "not the valve, reseated the loose sensor plug")
    alerts = open_alerts(node, T)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.error_code == "E404" and a.status == "open"
    assert a.correction_ids == (first.id, second.id)
    assert a.machine_ids == ("P1", "P2")
    assert a.manual_section_ids == (section.id,)
    assert "E404" in a.summary and section.id in a.summary
    # The briefing of a third machine with the same code shows it; other tenants never do.
    assert [x.id for x in open_alerts(node, T, "P3")] == [a.id]
    assert open_alerts(node, "globex") == []
    assert open_alerts(node, "globex", "P1") == []
    # Acknowledged: gone from the open list until new evidence arrives.
    assert monitor(node).acknowledge(T, a.id, "supervisor#abc")
    assert open_alerts(node, T) == []
    third = _correct(node, incs[2], "sensor plug again, valve untouched")
    reopened = open_alerts(node, T, "P1")
    assert [x.id for x in reopened] == [a.id]
    assert reopened[0].correction_ids == (first.id, second.id, third.id)
    assert reopened[0].to_json()["kind"] == "drift_alert"


def test_no_manual_step_no_alert(node: EdgeNode) -> None:
    node.duck.upsert_machines([Machine(tenant_id=T, id=m, name=m, qr_code=m)
                               for m in ("P1", "P2")])
    incs = [Incident(tenant_id=T, machine_id=m, occurred_at=datetime(2024, 5, 1, tzinfo=UTC),
                     error_code="E9", symptom="odd noise") for m in ("P1", "P2")]
    node.duck.insert_incidents(incs)
    for inc in incs:
        _correct(node, inc, "it was the fan")
    assert open_alerts(node, T) == []  # nothing documented to contradict
    node.indexer.index_chunks([DocumentChunk(
        tenant_id=T, id="man_e9", document_id="d", kind=MemoryKind.MANUAL,
        text="E9 is a noise warning.", error_codes=("E9",))])
    node.writer.refresh_drift(T)  # as a document write does
    assert open_alerts(node, T) == []  # documented, but no step prescribed


def test_drift_alert_endpoints(node: EdgeNode) -> None:
    from litestar.testing import TestClient

    from rae_edge.tokens import create_token
    from rae_sync.domain import Role
    from rae_tablet_api.app import create_app

    incs, section = _plant(node)
    a = _correct(node, incs[0], "sensor connector loose, not the valve")
    b = _correct(node, incs[1], "sensor plug again")
    tech = {"Authorization": f"Bearer {create_token(node.duck, T, Role.TECHNICIAN, 'tech')}"}
    sup = {"Authorization": f"Bearer {create_token(node.duck, T, Role.SUPERVISOR, 'sup')}"}
    with TestClient(create_app(node)) as client:
        got = client.get("/api/v1/drift-alerts", params={"machine_id": "P3"}, headers=tech)
        assert got.status_code == 200, got.text
        (alert,) = got.json()["alerts"]
        assert [c["id"] for c in alert["corrections"]] == [a.id, b.id]
        assert alert["corrections"][0]["text"] == "sensor connector loose, not the valve"
        assert alert["manual_sections"][0]["id"] == section.id
        assert "Replace the pressure relief valve" in alert["manual_sections"][0]["text"]
        url = f"/api/v1/drift-alerts/{alert['id']}/acknowledge"
        assert client.post(url, headers=tech).status_code == 403
        done = client.post(url, headers=sup)
        assert done.status_code == 200 and done.json()["status"] == "acknowledged"
        assert client.get("/api/v1/drift-alerts", headers=tech).json()["alerts"] == []
        assert client.post("/api/v1/drift-alerts/drift_nope/acknowledge",
                           headers=sup).status_code == 404


def test_with_sync_on_alerts_are_queued_for_central(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rae_edge import config
    from rae_sync.messages import DriftAlertMsg

    settings = config.load(None, data_dir=tmp_path / "n", node={"tenant_id": T},
                           sync={"mqtt_url": "mqtts://127.0.0.1:8883"})
    node = EdgeNode(settings)
    try:
        incs, section = _plant(node)
        _correct(node, incs[0], "loose sensor plug")
        _correct(node, incs[1], "loose sensor plug again")
        (alert,) = open_alerts(node, T)
        queued = [p for _, t, kind, p in node.duck.outbox_peek(1000) if kind == "drift_alert"]
        assert monitor(node).acknowledge(T, alert.id, "sup")  # central hears of it too
        closed = [p for _, t, kind, p in node.duck.outbox_peek(1000)
                  if kind == "drift_alert"][1:]
    finally:
        node.close()
    assert len(queued) == 1
    (ack,) = [DriftAlertMsg(**p) for p in closed]
    assert (ack.id, ack.status, ack.correction_ids) == (alert.id, "acknowledged",
                                                        alert.correction_ids)
    msg = DriftAlertMsg(**queued[0])
    assert (msg.id, msg.error_code, msg.manual_section_ids) == (alert.id, "E404", (section.id,))
    # the section's text travels too: central has no manuals to show the evidence from
    assert [s.id for s in msg.manual_sections] == [section.id]
    assert "Replace the pressure relief valve" in msg.manual_sections[0].text


def test_an_incident_named_by_earlier_corrections_opens_the_alert(node: EdgeNode) -> None:
    """The writer skips the drift recompute for an incident no correction names; one that
    corrections already name (they arrived first, e.g. from another plant) opens it."""
    incs, section = _plant(node)
    late = Incident(tenant_id=T, machine_id="P2", occurred_at=datetime(2024, 6, 1, tzinfo=UTC),
                    error_code="E404", symptom="E404 again on the press, pressure low")
    first = _correct(node, incs[0], "valve was fine: the pressure sensor connector was loose")
    second = Correction(tenant_id=T, machine_id="P2", text="sensor plug, not the valve",
                        author="tech", target_id=late.id)
    node.memory.record_correction(second)  # its target is not stored yet: no code, no alert
    assert open_alerts(node, T) == []
    unrelated = Incident(tenant_id=T, machine_id="P3", occurred_at=datetime(2024, 6, 2,
                         tzinfo=UTC), error_code="E7", symptom="belt slips again")
    node.memory.add_incidents(T, [unrelated])
    assert open_alerts(node, T) == []
    node.memory.add_incidents(T, [late])  # now the second correction counts for E404
    alerts = open_alerts(node, T)
    assert [(a.error_code, a.correction_ids) for a in alerts] == [("E404", (first.id,
                                                                            second.id))]
    assert alerts[0].manual_section_ids == (section.id,)
