"""Drift alerts: ``GET /api/v1/drift-alerts`` (open alerts with their evidence, optionally
for one machine) and ``POST /api/v1/drift-alerts/{alert_id}/acknowledge`` (supervisor)."""

from __future__ import annotations

from typing import Any

from litestar import get, post

from rae_edge.audit import actor_of
from rae_edge.drift import DriftMonitor
from rae_edge.errors import NotFoundError
from rae_edge.tokens import Principal
from rae_tablet_api import guards


@get("/api/v1/drift-alerts", summary="Open drift alerts", sync_to_thread=True,
     guards=guards.TECHNICIAN)
def list_alerts(drift: DriftMonitor, principal: Principal,
                machine_id: str | None = None) -> dict[str, Any]:
    alerts = drift.open_alerts(principal.tenant_id, machine_id or None)
    return {"alerts": [drift.evidence(a) for a in alerts]}


@post("/api/v1/drift-alerts/{alert_id:str}/acknowledge", summary="Acknowledge a drift alert",
      sync_to_thread=True, status_code=200, guards=guards.SUPERVISOR)
def acknowledge(drift: DriftMonitor, principal: Principal, alert_id: str) -> dict[str, Any]:
    if not drift.acknowledge(principal.tenant_id, alert_id, actor_of(principal)):
        raise NotFoundError(f"no drift alert {alert_id!r}")
    alert = drift.get(principal.tenant_id, alert_id)
    assert alert is not None
    return drift.evidence(alert)


ROUTES = [list_alerts, acknowledge]
