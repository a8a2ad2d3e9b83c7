"""Reads don't write: a briefing GET, on a node whose tenant has an open drift alert
(recomputed when the corrections were written, not on the read), writes its audit entry
(queued for central: sync is on) and the scan's push message, and changes nothing else:
every other DuckDB table keeps every row, the same rows, byte for byte."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rae_edge.store import DuckStore
from rae_sync.domain import DocumentChunk
from tests.tablet_api.api_client import api_for

MACHINES = [{"id": m, "name": m, "qr_code": f"QR-{m}", "site": "plant-1"}
            for m in ("P1", "P2", "P3")]


def _incident(machine: str, day: int) -> dict[str, Any]:
    return {"machine_id": machine, "occurred_at": f"2026-05-0{day}T08:00:00+00:00",
            "error_code": "E404", "symptom": "hydraulic pressure low, alarm E404",
            "action": "replaced the pressure relief valve as the manual says"}


def _snapshot(duck: DuckStore) -> dict[str, list[str]]:
    """Every row of every table, as text, sorted (a change anywhere shows)."""
    tables = [str(r[0]) for r in duck.query(
        "SELECT table_name FROM duckdb_tables() ORDER BY table_name")]
    return {t: sorted(str(r) for r in duck.query(f'SELECT * FROM "{t}"')) for t in tables}


def test_a_briefing_get_writes_its_audit_entry_and_nothing_else(tmp_path: Path) -> None:
    with api_for(tmp_path / "node", sync={"mqtt_url": "mqtt://127.0.0.1:9"}) as api:
        node = api.node
        assert node.settings.sync_on
        api.ok(api.post("/machines", MACHINES))
        ids = api.ok(api.post("/incidents", [_incident(m, d) for d, m in
                                             enumerate(("P1", "P2", "P3"), 1)]))["ids"]
        node.indexer.index_chunks([DocumentChunk(
            tenant_id="acme", id="man_press_e404", document_id="doc_press",
            document_title="Press manual", section="7.3 Alarm E404",
            text="E404 low hydraulic pressure: 1. Replace the pressure relief valve.",
            error_codes=("E404",))])
        for inc_id, machine in zip(ids[:2], ("P1", "P2"), strict=True):
            api.ok(api.post("/corrections", {"machine_id": machine, "target_id": inc_id,
                                             "text": "not the valve: the sensor plug was "
                                                     "loose"}))
        # the second correction's write opened the alert (two machines contradict step 1)
        (alert,) = node.duck.query("SELECT id, status FROM drift_alerts")
        assert alert[1] == "open"
        assert node.push.flush(10)
        before = _snapshot(node.duck)

        b = api.ok(api.get("/machines/QR-P3/briefing"))
        assert [a["id"] for a in b["drift_alerts"]] == [alert[0]]  # the read saw it
        assert node.push.flush(10)
        after = _snapshot(node.duck)

    changed = {t for t in before if before[t] != after[t]}
    assert changed == {"audit_log", "meta", "outbox", "push_messages"}, changed
    # exactly one row more in each, nothing else touched
    for t in ("audit_log", "outbox", "push_messages"):
        assert len(after[t]) == len(before[t]) + 1, t
        assert set(before[t]) <= set(after[t]), t
    (audited,) = set(after["audit_log"]) - set(before["audit_log"])
    assert "/machines/QR-P3/briefing" in audited and alert[0] in audited  # with its ids
    (queued,) = set(after["outbox"]) - set(before["outbox"])
    assert "audit_entry" in queued
    (pushed,) = set(after["push_messages"]) - set(before["push_messages"])
    assert "'briefing'" in pushed
    # meta: only the audit chain's head moved
    (meta_new,) = set(after["meta"]) - set(before["meta"])
    assert meta_new.startswith("('audit_head:acme'"), meta_new
    assert len(after["meta"]) == len(before["meta"])
