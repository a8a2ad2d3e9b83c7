"""Drift alerts: ``GET /api/v1/drift-alerts`` (open alerts with their evidence, optionally
for one machine) and ``POST /api/v1/drift-alerts/{alert_id}/acknowledge`` (supervisor)."""

from __future__ import annotations

from typing import Any

from litestar import get, post
from litestar.datastructures import State

from rae_edge.drift import monitor
from rae_edge.errors import NotFoundError
from rae_edge.node import EdgeNode
from rae_edge.tokens import Principal
from rae_sync.domain import Role
from rae_tablet_api.audit_hook import actor_of
from rae_tablet_api.auth import require


@get("/api/v1/drift-alerts", summary="Open drift alerts", sync_to_thread=True)
def list_alerts(state: State, principal: Principal,
                machine_id: str | None = None) -> dict[str, Any]:
    node: EdgeNode = state.node
    mon = monitor(node)
    alerts = mon.open_alerts(principal.tenant_id, machine_id or None)
    return {"alerts": [mon.evidence(a) for a in alerts]}


@post("/api/v1/drift-alerts/{alert_id:str}/acknowledge", summary="Acknowledge a drift alert",
      sync_to_thread=True, status_code=200)
def acknowledge(state: State, principal: Principal, alert_id: str) -> dict[str, Any]:
    require(principal, Role.SUPERVISOR)
    node: EdgeNode = state.node
    mon = monitor(node)
    if not mon.acknowledge(principal.tenant_id, alert_id, actor_of(principal)):
        raise NotFoundError(f"no drift alert {alert_id!r}")
    alert = mon.get(principal.tenant_id, alert_id)
    assert alert is not None
    return mon.evidence(alert)


ROUTES = [list_alerts, acknowledge]
