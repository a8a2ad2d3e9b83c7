"""Drift alerts at central: what the edges raise when field corrections contradict a
manual's documented fix (``rae_edge.drift``), kept per tenant with their evidence.

An alert's id derives from tenant and error code on the node, so the same drift is one
row (``drift_alerts``, migration ``0004``, under the tenant policy); a newer version of it
(a grown evidence list, a changed status) replaces the row only when its envelope's hybrid
logical clock is later than the stored one: a replayed or late older version never wins,
and a repeat is a no-op. A version that names the same manual sections without their
texts (the edge's acknowledgement) keeps the texts already stored. :func:`store_alerts`
runs inside the ingest's tenant transaction (:meth:`rae_central.store.CentralStore.ingest`);
:func:`open_alerts` is the console's read side, joining each alert's correction ids to
the corrections central holds (their text, machine, author and origin), and showing the
manual sections as the node sent them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from rae_central.store import Accepted, CentralStore

KIND = "drift_alert"  # Accepted.kind of a DriftAlertMsg

_UPSERT = text("""
    INSERT INTO drift_alerts (tenant_id, id, error_code, status, summary, machine_ids,
        correction_ids, manual_section_ids, manual_sections, created_at, origin_site,
        origin_node, hlc, message_id, received_at, updated_at)
    VALUES (:tenant_id, :id, :error_code, :status, :summary, CAST(:machine_ids AS jsonb),
        CAST(:correction_ids AS jsonb), CAST(:manual_section_ids AS jsonb),
        CAST(:manual_sections AS jsonb), :created_at, :origin_site, :origin_node, :hlc,
        :message_id, :received_at, :received_at)
    ON CONFLICT (tenant_id, id) DO UPDATE SET
        error_code = excluded.error_code, status = excluded.status,
        summary = excluded.summary, machine_ids = excluded.machine_ids,
        correction_ids = excluded.correction_ids,
        manual_section_ids = excluded.manual_section_ids,
        manual_sections = CASE WHEN excluded.manual_sections = '[]'::jsonb
            AND excluded.manual_section_ids = drift_alerts.manual_section_ids
            THEN drift_alerts.manual_sections ELSE excluded.manual_sections END,
        created_at = coalesce(drift_alerts.created_at, excluded.created_at),
        origin_site = excluded.origin_site, origin_node = excluded.origin_node,
        hlc = excluded.hlc, message_id = excluded.message_id,
        updated_at = excluded.received_at
    WHERE excluded.hlc > drift_alerts.hlc""")


def store_alerts(conn: Connection, new: Sequence[Accepted], at: datetime) -> int:
    """Upserts the drift alerts among ``new`` (one tenant's, in its transaction): the
    latest version by HLC per alert. Returns how many alerts were offered."""
    latest: dict[str, Accepted] = {}
    for a in new:
        if a.kind != KIND:
            continue
        seen = latest.get(str(a.record["id"]))
        # one statement may not touch a row twice: keep the batch's newest version
        if seen is None or a.hlc > seen.hlc:
            latest[str(a.record["id"])] = a
    if not latest:
        return 0
    rows = []
    for a in latest.values():
        r = a.record
        rows.append({
            "tenant_id": a.node[0], "id": r["id"], "error_code": r["error_code"],
            "status": r["status"], "summary": r["summary"],
            "machine_ids": json.dumps(list(r.get("machine_ids") or [])),
            "correction_ids": json.dumps(list(r.get("correction_ids") or [])),
            "manual_section_ids": json.dumps(list(r.get("manual_section_ids") or [])),
            "manual_sections": json.dumps(list(r.get("manual_sections") or [])),
            "created_at": _when(r.get("created_at")), "origin_site": a.node[1],
            "origin_node": a.node[2], "hlc": a.hlc, "message_id": a.message_id,
            "received_at": at})
    conn.execute(_UPSERT, rows)
    return len(rows)


def open_alerts(store: CentralStore, tenant: str, include_closed: bool = False,
                limit: int = 100) -> list[dict[str, Any]]:
    """A tenant's drift alerts (open ones unless ``include_closed``), newest first, each
    with its evidence: ``corrections`` (id, text, machine, author, origin; ``received:
    false`` for an id central has not received yet) and ``manual_sections`` (id, section,
    text as the node sent them; the ids alone from a node that sent no text)."""
    where = "tenant_id = :t" + ("" if include_closed else " AND status = 'open'")
    with store.tx(tenant) as conn:
        alerts = conn.execute(text(
            "SELECT id, error_code, status, summary, machine_ids, correction_ids, "
            "manual_section_ids, manual_sections, created_at, updated_at, origin_site, "
            f"origin_node, hlc FROM drift_alerts WHERE {where} "
            "ORDER BY updated_at DESC, id LIMIT :n"), {"t": tenant, "n": limit}).mappings().all()
        ids = sorted({c for a in alerts for c in a["correction_ids"]})
        found: dict[str, dict[str, Any]] = {}
        if ids:
            for c in conn.execute(text(
                    "SELECT id, text, machine_id, author, target_id, hlc, origin_site, "
                    "origin_node FROM corrections WHERE tenant_id = :t AND id = ANY(:ids)"),
                    {"t": tenant, "ids": ids}).mappings():
                found[c["id"]] = {
                    "id": c["id"], "text": c["text"], "machine_id": c["machine_id"],
                    "author": c["author"], "target_id": c["target_id"], "hlc": c["hlc"],
                    "origin": f"{c['origin_site']}/{c['origin_node']}", "received": True}
    out = []
    for a in alerts:
        sections = list(a["manual_sections"]) or [
            {"id": s, "section": None, "text": ""} for s in a["manual_section_ids"]]
        out.append({
            "tenant_id": tenant, "id": a["id"], "error_code": a["error_code"],
            "status": a["status"], "summary": a["summary"],
            "machine_ids": list(a["machine_ids"]),
            "corrections": [found.get(c, {"id": c, "received": False})
                            for c in a["correction_ids"]],
            "manual_sections": sections,
            "created_at": _iso(a["created_at"]), "updated_at": _iso(a["updated_at"]),
            "origin": f"{a['origin_site']}/{a['origin_node']}", "hlc": a["hlc"]})
    return out


def _when(v: Any) -> datetime | None:
    return datetime.fromisoformat(v) if isinstance(v, str) else v


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None
