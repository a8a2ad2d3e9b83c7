"""Drift alerts at central, through the real broker, the ingest worker and PostgreSQL with
row-level security: an edge's alert is stored with its evidence and shown by the console
API to its tenant's token only; a newer version (by HLC) replaces it, an older or a
repeated one does not; an alert naming another tenant is dead-lettered."""

from __future__ import annotations

from litestar.testing import TestClient

from rae_central.admin.app import create_app
from rae_central.drift_alerts import open_alerts
from rae_central.worker import IngestWorker
from rae_sync.domain import Correction
from rae_sync.envelope import Envelope
from rae_sync.messages import CorrectionMsg, DriftAlertMsg, DriftSection
from tests.central.conftest import Central
from tests.central.edge_sim import EdgeSim, wait_for

OPERATOR = "operator-token-0123456789"
TOKENS = {"acme": "acme-console-token-0123", "globex": "globex-console-token-0123"}
MANUAL = DriftSection(id="man-p3-e404", section="4.2 Pressure fault E404",
                      text="Step 1: replace the pressure relief valve.")


def _correction(edge: EdgeSim, machine: str, text: str) -> Correction:
    c = Correction(tenant_id=edge.node[0], machine_id=machine, text=text, author="ana",
                   target_id="inc-e404", origin_node=edge.node[2], hlc=str(edge.clock.now()))
    env = edge.envelope(CorrectionMsg(correction=c))
    edge.outbox[env.message_id] = env
    return c


def _alert(edge: EdgeSim, corrections: list[Correction], status: str = "open",
           tenant: str | None = None) -> Envelope:
    msg = DriftAlertMsg(
        id="drift_acme_e404", tenant_id=tenant or edge.node[0], error_code="E404",
        status=status, summary=f"{len(corrections)} field corrections amend E404",
        machine_ids=tuple(sorted({c.machine_id for c in corrections})),
        correction_ids=tuple(c.id for c in corrections),
        manual_section_ids=(MANUAL.id,), manual_sections=(MANUAL,))
    return edge.envelope(msg)


def test_drift_alert_reaches_the_console_of_its_tenant_only(
        central: Central, worker: IngestWorker) -> None:
    a, b, x = central.edge("a"), central.edge("b"), central.edge("x")
    app_store = central.app_store()
    try:
        c1 = _correction(a, "P3", "the sensor connector was loose, not the valve")
        c2 = _correction(b, "P7", "reseated the sensor plug; valve was fine")
        a.deliver_all()
        b.deliver_all()
        first = _alert(a, [c1, c2])
        a.outbox[first.message_id] = first
        a.deliver_all()
        # another tenant's node cannot raise an alert in acme's name
        forged = _alert(x, [c1], tenant="acme")
        x.outbox[forged.message_id] = forged
        x.send([forged])
        wait_for(lambda: central.store.count("dead_letters", "globex") == 1,
                 what="the forged alert's dead letter")

        with TestClient(create_app(app_store, OPERATOR, tenant_tokens=TOKENS)) as client:
            def get(token: str, path: str = "/api/v1/admin/drift-alerts") -> object:
                r = client.get(path, headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 200, r.text
                return r.json()

            (alert,) = get(TOKENS["acme"])  # type: ignore[misc]
            assert (alert["id"], alert["error_code"], alert["status"]) == (
                "drift_acme_e404", "E404", "open")
            assert alert["machine_ids"] == ["P3", "P7"]
            assert [(c["id"], c["machine_id"], c["text"], c["received"])
                    for c in alert["corrections"]] == [
                (c1.id, "P3", c1.text, True), (c2.id, "P7", c2.text, True)]
            assert alert["corrections"][1]["origin"] == "plant-2/node-b"
            assert alert["manual_sections"] == [MANUAL.model_dump()]
            assert alert["origin"] == "plant-1/node-a"
            overview = get(TOKENS["acme"], "/api/v1/admin/overview")
            assert [d["id"] for d in overview["drift_alerts"]] == ["drift_acme_e404"]  # type: ignore[index]
            # globex's token and the operator's see none of it
            assert get(TOKENS["globex"]) == []
            assert get(OPERATOR) == []
            assert "connector" not in str(get(OPERATOR, "/api/v1/admin/overview"))
            r = client.get("/api/v1/admin/drift-alerts?tenant=acme",
                           headers={"Authorization": f"Bearer {TOKENS['globex']}"})
            assert r.status_code == 404

            # a newer version replaces the alert; an older one arriving late does not
            c3 = _correction(b, "P9", "same again: connector, valve untouched")
            b.deliver_all()
            older = _alert(a, [c1])  # stamped before the newer one
            newer = _alert(a, [c1, c2, c3])
            a.outbox[newer.message_id] = newer
            a.deliver_all()
            a.outbox[older.message_id] = older
            a.deliver_all()
            (alert,) = get(TOKENS["acme"])  # type: ignore[misc]
            assert [c["id"] for c in alert["corrections"]] == [c1.id, c2.id, c3.id]
            assert alert["machine_ids"] == ["P3", "P7", "P9"] and alert["hlc"] == newer.hlc
            # a repeat of a known message is a no-op; a later "acknowledged" closes it
            a.send([newer])
            # as the edge sends a supervisor's acknowledgement: the section ids, no texts
            closed = a.envelope(newer.message_as(DriftAlertMsg).model_copy(
                update={"status": "acknowledged", "manual_sections": ()}))
            a.outbox[closed.message_id] = closed
            a.deliver_all()
            assert get(TOKENS["acme"]) == []
            (kept,) = open_alerts(central.store, "acme", include_closed=True)
            assert kept["status"] == "acknowledged"
            assert kept["manual_sections"] == [MANUAL.model_dump()]
        assert central.store.count("messages", "acme") == 7  # 3 corrections, 4 alerts
    finally:
        for e in (a, b, x):
            e.close()
        app_store.engine.dispose()
