"""Machine alarms: ``GET /api/v1/alarms`` (technician): each source's state with its last
error, the queue, the newest incident of every alarm (open or closed, with its count and
duration) and the payloads set aside with their reasons. ``/health`` shows the same
states without the errors (it needs no token)."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.datastructures import State

from rae_edge.node import EdgeNode
from rae_edge.tokens import Principal
from rae_tablet_api import guards


@get("/api/v1/alarms", summary="Machine alarm sources, alarms and set-aside payloads",
     sync_to_thread=True, tags=["alarms"], guards=guards.TECHNICIAN)
def list_alarms(state: State, principal: Principal, machine_id: str | None = None,
                active: bool | None = None) -> dict[str, Any]:
    node: EdgeNode = state.node
    svc = node.alarms
    if principal.tenant_id != node.tenant_id:  # the sources belong to the node's tenant
        return {"health": {"enabled": False}, "alarms": [], "rejected": []}
    alarms = [s.to_json() for s in svc.states()
              if (machine_id is None or s.machine_id == machine_id)
              and (active is None or s.active == active)]
    return {"health": svc.health(), "alarms": alarms, "rejected": svc.rejects()}


ROUTES = [list_alarms]
