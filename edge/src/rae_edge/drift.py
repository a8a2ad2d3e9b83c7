"""Drift alerts: the field keeps correcting what the manual prescribes for an error code.

An alert opens for ``(tenant, error code)`` when corrections on at least
:data:`MIN_MACHINES` different machines amend memories about that code (incidents with the
code, or the manual's own section for it) while the manual has a section for the code
that prescribes a step. Its evidence is the correction ids, the machines and the manual
section ids, so a supervisor can read what the field said against what the manual says.

Alerts live in DuckDB (``drift_alerts``); their id derives from tenant and code, so the
same drift is one alert whose evidence grows. An acknowledged alert reopens when new
corrections arrive. Alerts are recomputed when facts are written (the node's
:class:`~rae_edge.write.Writer` calls :meth:`DriftMonitor.refresh` after every correction,
incident or document it stores); reading them (:func:`open_alerts`, a briefing) writes
nothing. With sync on (``EdgeSettings.sync_on``), each opened, grown or acknowledged alert
is queued for central as a typed ``DriftAlertMsg`` in the same transaction.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from rae_edge.store.duck import DuckStore
from rae_edge.store.lance import LanceStore, in_list, sql_literal
from rae_edge.store.outbox import enqueue
from rae_sync.messages import DriftAlertMsg, DriftSection

MIN_MACHINES = 2
OUTBOX_KIND = "drift_alert"  # rae_sync.messages.DriftAlertMsg, its fields as payload
# A manual section "prescribes a step" when it reads like a procedure: a numbered step or
# an imperative maintenance verb.
_STEP = re.compile(
    r"(^|\n)\s*(step\s*\d+|\d+[.)])\s|\b(replace|check|tighten|reset|clean|adjust|inspect|"
    r"lubricate|grease|calibrate|remove|install|verify|set|turn|restart|reseat|refill|"
    r"drain|bleed|realign|align|torque|test)\b",
    re.IGNORECASE,
)
_SECTION_COLUMNS = ["id", "text", "section", "document_id", "error_codes", "kind"]


def prescribes_step(text: str) -> bool:
    return bool(_STEP.search(text or ""))


@dataclass(frozen=True)
class DriftAlert:
    """One open (or acknowledged) drift alert with its evidence."""

    tenant_id: str
    id: str
    error_code: str
    status: str
    summary: str
    machine_ids: tuple[str, ...]
    correction_ids: tuple[str, ...]
    manual_section_ids: tuple[str, ...]
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": "drift_alert", "error_code": self.error_code,
            "status": self.status, "summary": self.summary,
            "machine_ids": list(self.machine_ids), "correction_ids": list(self.correction_ids),
            "manual_section_ids": list(self.manual_section_ids),
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
        }


def alert_id(tenant_id: str, error_code: str) -> str:
    return "drift_" + hashlib.sha256(f"{tenant_id}\x1f{error_code}".encode()).hexdigest()[:20]


class DriftMonitor:
    """Finds drift in one node's memories and keeps ``drift_alerts`` up to date."""

    def __init__(self, duck: DuckStore, lance: LanceStore, *, sync_on: bool,
                 min_machines: int = MIN_MACHINES) -> None:
        self.duck = duck
        self.lance = lance
        self.sync_on = sync_on  # queue each opened/acknowledged alert for central
        self.min_machines = min_machines
        self._lock = threading.Lock()
        # Moves on after every committed change to the alerts (every write to drift_alerts
        # is in this class, and one process writes a data folder): readers that cache the
        # open alerts (the briefing) compare it instead of querying the tables.
        self.generation = 0

    # -- evidence -----------------------------------------------------------------------
    def _corrections_by_code(self, tenant: str) -> dict[str, list[tuple[str, str]]]:
        """error code -> [(correction id, machine id)] for corrections that amend an
        incident with that code or a manual section about it."""
        out: dict[str, list[tuple[str, str]]] = defaultdict(list)
        rows = self.duck.query(
            """SELECT c.id, c.machine_id, c.target_id, i.error_code
               FROM corrections c LEFT JOIN incidents i
                 ON i.tenant_id = c.tenant_id AND i.id = c.target_id
               WHERE c.tenant_id = ? AND c.target_id IS NOT NULL
               ORDER BY c.valid_from, c.id""",
            [tenant],
        )
        other_targets: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for cid, machine, target, code in rows:
            if code:
                out[str(code)].append((str(cid), str(machine)))
            else:
                other_targets[str(target)].append((str(cid), str(machine)))
        if other_targets:  # corrections of a manual section itself
            where = (f"tenant_id = {sql_literal(tenant)} AND kind = 'manual' AND "
                     f"{in_list('id', list(other_targets))}")
            for row in self.lance.rows(where, ["id", "error_codes"], len(other_targets)):
                for code in row.get("error_codes") or []:
                    out[str(code)].extend(other_targets[str(row["id"])])
        return out

    def _manual_sections(self, tenant: str, code: str) -> list[dict[str, Any]]:
        where = (f"tenant_id = {sql_literal(tenant)} AND kind = 'manual' AND "
                 f"array_has(error_codes, {sql_literal(code)})")
        rows = self.lance.rows(where, _SECTION_COLUMNS, 50)
        return [r for r in rows if prescribes_step(str(r.get("text") or ""))]

    # -- upkeep -----------------------------------------------------------------------
    def refresh(self, tenant: str) -> list[DriftAlert]:
        """Re-evaluates every error code of the tenant; opens, grows or reopens alerts
        (a transaction only when one changes). Returns the alerts opened or changed."""
        with self._lock:
            changed: list[DriftAlert] = []
            for code, evidence in sorted(self._corrections_by_code(tenant).items()):
                machines = tuple(sorted({m for _, m in evidence}))
                if len(machines) < self.min_machines:
                    continue
                sections = self._manual_sections(tenant, code)
                if not sections:
                    continue
                alert = self._upsert(tenant, code, machines,
                                     tuple(dict.fromkeys(c for c, _ in evidence)),
                                     tuple(str(s["id"]) for s in sections), sections)
                if alert is not None:
                    changed.append(alert)
        return changed

    def _upsert(self, tenant: str, code: str, machines: tuple[str, ...],
                corrections: tuple[str, ...], sections: tuple[str, ...],
                section_rows: list[dict[str, Any]] | None = None) -> DriftAlert | None:
        aid = alert_id(tenant, code)
        now = datetime.now(UTC)
        summary = (f"{len(corrections)} field corrections on {len(machines)} machines "
                   f"({', '.join(machines)}) amend the documented fix for {code} "
                   f"(manual sections {', '.join(sections)})")
        with self.duck.transaction() as cur:
            old = cur.execute(
                "SELECT status, correction_ids, manual_section_ids FROM drift_alerts "
                "WHERE tenant_id = ? AND id = ?", [tenant, aid]).fetchone()
            if old is not None and set(corrections) <= set(old[1]) and \
                    set(sections) == set(old[2]):
                return None  # nothing new: an acknowledged alert stays acknowledged
            if self.sync_on:  # central sees it too
                enqueue(cur, [DriftAlertMsg(
                    id=aid, tenant_id=tenant, error_code=code, status="open",
                    summary=summary, machine_ids=machines, correction_ids=corrections,
                    manual_section_ids=sections, created_at=now,
                    # the texts too: central has no manuals to look them up in
                    manual_sections=tuple(
                        DriftSection(id=str(r["id"]),
                                     section=str(r["section"])[:500] if r.get("section")
                                     else None,
                                     text=str(r.get("text") or "")[:20_000])
                        for r in section_rows or []))])
            if old is None:
                cur.execute(
                    """INSERT INTO drift_alerts (tenant_id, id, error_code, status, summary,
                       machine_ids, correction_ids, manual_section_ids, created_at, updated_at)
                       VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)""",
                    [tenant, aid, code, summary, list(machines), list(corrections),
                     list(sections), now, now])
            else:
                cur.execute(
                    """UPDATE drift_alerts SET status = 'open', summary = ?, machine_ids = ?,
                       correction_ids = ?, manual_section_ids = ?, updated_at = ?,
                       acknowledged_at = NULL, acknowledged_by = NULL
                       WHERE tenant_id = ? AND id = ?""",
                    [summary, list(machines), list(corrections), list(sections), now, tenant,
                     aid])
        self.generation += 1
        return self.get(tenant, aid)

    def acknowledge(self, tenant: str, alert: str, by: str) -> bool:
        """Marks an alert seen by a supervisor; it reopens on new evidence."""
        try:
            return self._acknowledge(tenant, alert, by)
        finally:
            self.generation += 1

    def _acknowledge(self, tenant: str, alert: str, by: str) -> bool:
        with self.duck.transaction() as cur:
            found = cur.execute(
                "SELECT error_code, summary, machine_ids, correction_ids, manual_section_ids, "
                "created_at FROM drift_alerts WHERE tenant_id = ? AND id = ?", [tenant, alert]
            ).fetchone()
            cur.execute(
                "UPDATE drift_alerts SET status = 'acknowledged', acknowledged_at = now(), "
                "acknowledged_by = ? WHERE tenant_id = ? AND id = ?", [by, tenant, alert])
            if found is not None and self.sync_on:
                # central closes it too (the sections' texts it has from the open version)
                created = found[5]
                enqueue(cur, [DriftAlertMsg(
                    id=alert, tenant_id=tenant, error_code=found[0], status="acknowledged",
                    summary=found[1], machine_ids=tuple(found[2]),
                    correction_ids=tuple(found[3]), manual_section_ids=tuple(found[4]),
                    created_at=created.replace(tzinfo=created.tzinfo or UTC)
                    if created is not None else None)])
        return found is not None

    # -- reading ------------------------------------------------------------------------
    def evidence(self, alert: DriftAlert) -> dict[str, Any]:
        """The alert with its evidence spelled out: each correction (who said what, on which
        machine, when) and each manual section it contradicts (its text)."""
        corrections = self.duck.query_dicts(
            "SELECT id, machine_id, text, author, target_id, valid_from FROM corrections "
            "WHERE tenant_id = ? AND list_contains(?, id) ORDER BY valid_from, id",
            [alert.tenant_id, list(alert.correction_ids)])
        sections: list[dict[str, Any]] = []
        if alert.manual_section_ids:
            where = (f"tenant_id = {sql_literal(alert.tenant_id)} AND "
                     f"{in_list('id', list(alert.manual_section_ids))}")
            sections = [
                {"id": r["id"], "document_id": r.get("document_id"),
                 "section": r.get("section"), "text": r.get("text")}
                for r in self.lance.rows(where, _SECTION_COLUMNS,
                                              len(alert.manual_section_ids))]
        out = alert.to_json()
        out["corrections"] = [{**c, "valid_from": c["valid_from"].isoformat()}
                              for c in corrections]
        out["manual_sections"] = sections
        return out

    def get(self, tenant: str, alert: str) -> DriftAlert | None:
        got = self._select("tenant_id = ? AND id = ?", [tenant, alert])
        return got[0] if got else None

    def open_alerts(self, tenant: str, machine_id: str | None = None) -> list[DriftAlert]:
        """The tenant's open alerts (recomputed when facts were written); with
        ``machine_id`` only those that concern the machine (its corrections are evidence,
        or it has incidents with the alert's error code). A read: it writes nothing."""
        if machine_id is None:
            return self._select("tenant_id = ? AND status = 'open'", [tenant])
        return self._select(
            """tenant_id = ? AND status = 'open' AND (list_contains(machine_ids, ?) OR
               error_code IN (SELECT error_code FROM incidents WHERE tenant_id = ? AND
                              machine_id = ? AND error_code IS NOT NULL))""",
            [tenant, machine_id, tenant, machine_id])

    def _select(self, where: str, params: list[Any]) -> list[DriftAlert]:
        rows = self.duck.query_dicts(
            "SELECT tenant_id, id, error_code, status, summary, machine_ids, correction_ids, "
            f"manual_section_ids, created_at, updated_at FROM drift_alerts WHERE {where} "
            "ORDER BY updated_at DESC, id", params)
        return [DriftAlert(**{**r, **{k: tuple(r[k] or ()) for k in (
            "machine_ids", "correction_ids", "manual_section_ids")}}) for r in rows]


class HasDrift(Protocol):
    """Whatever holds the node's one monitor (the built node: ``node.drift``)."""

    @property
    def drift(self) -> DriftMonitor: ...


def monitor(node: HasDrift) -> DriftMonitor:
    """The node's one monitor (built once with the node, so its lock is shared)."""
    return node.drift


def open_alerts(node: HasDrift, tenant: str, machine_id: str | None = None) -> list[DriftAlert]:
    """Open drift alerts of ``tenant`` (for one machine, or all); see
    :meth:`DriftMonitor.open_alerts`."""
    return node.drift.open_alerts(tenant, machine_id)
