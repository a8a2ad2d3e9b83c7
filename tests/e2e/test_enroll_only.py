"""One rule for "sync is on": a node started with ``rae-edge serve --enroll FILE`` alone
(its broker URL inside the identity, no ``--mqtt-url``) gets its audit entries and its
drift alerts to central, not only its corrections. Everything a real process: the node,
``rae-central serve``, mosquitto, PostgreSQL (:mod:`tests.fixtures.stack`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rae_edge.sample_plant.loader import SAMPLE_DIR
from tests.fixtures.stack import Stack, wait_for

pytestmark = pytest.mark.faults  # real processes, like the other e2e tests


def test_a_node_with_only_enroll_syncs_audit_entries_and_drift_alerts(
        stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory()
    node = stack.add_node("a", mqtt_flag=False)
    assert "--mqtt-url" not in node.process.extra_args
    stack.add_machines(["a"], [{"id": m, "name": m, "qr_code": f"QR-{m}", "site": "plant-a"}
                               for m in ("P1", "P2", "P3")])
    incidents: list[dict[str, Any]] = [
        {"machine_id": m, "occurred_at": f"2026-02-0{d}T08:15:00+00:00", "error_code": "E404",
         "symptom": "light curtain fault, ram stops", "action": "replaced the receiver"}
        for d, m in enumerate(("P1", "P2", "P3"), 1)]
    ids = stack.post_incidents("a", incidents)["ids"]
    # the manual, whose E404 section prescribes steps
    r = node.client.post("/api/v1/documents", data={"kind": "manual"},
                         files={"file": ("manual.pdf", (SAMPLE_DIR / "manual.pdf").read_bytes(),
                                         "application/pdf")})
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    wait_for(lambda: node.client.get(f"/api/v1/jobs/{job}").json()["status"] == "done", 120,
             "the manual ingested")
    # two machines' corrections contradict it: the node opens a drift alert on the write
    for inc, machine in zip(ids[:2], ("P1", "P2"), strict=True):
        stack.post_correction("a", machine, "not the receiver: the emitter cable was loose",
                              target_id=inc)
    alerts = node.client.get("/api/v1/drift-alerts").json()["alerts"]
    assert [a["error_code"] for a in alerts] == ["E404"], alerts
    alert_id = alerts[0]["id"]
    brief = stack.briefing("a", "QR-P3")  # an audited read
    assert [a["id"] for a in brief["drift_alerts"]] == [alert_id]

    # central has them: the alert with its evidence, and the node's audit entries
    wait_for(lambda: stack.sql("SELECT count(*) FROM drift_alerts WHERE id = :i",
                               i=alert_id)[0][0] == 1, 60, "the drift alert at central")
    (row,) = stack.sql("SELECT error_code, status FROM drift_alerts WHERE id = :i", i=alert_id)
    assert tuple(row) == ("E404", "open")

    def audited() -> list[str]:
        return [str(r[0]) for r in stack.sql(
            "SELECT entry->>'action' FROM audit_entries WHERE tenant_id = 'acme' AND "
            "site_id = 'plant-a' AND node_id = 'node-a' ORDER BY seq")]

    def seqs() -> list[int]:
        return [int(r[0]) for r in stack.sql(
            "SELECT seq FROM audit_entries WHERE tenant_id = 'acme' AND node_id = 'node-a' "
            "ORDER BY seq")]

    # the node's chain arrives whole: from its first entry, seqs without gaps or repeats,
    # up to the briefing's entry
    wait_for(lambda: "GET /api/v1/machines/QR-P3/briefing" in audited()
             and seqs() == list(range(1, len(seqs()) + 1)), 60,
             "the node's audit entries at central, the briefing's included")
    got = audited()
    assert got.count("POST /api/v1/corrections") == 2, got
    assert got.count("POST /api/v1/incidents") == 1, got
