"""``POST /api/v1/corrections`` (technician): a typed correction becomes reflective memory
at once: stored with its sync outbox row in one transaction, indexed, linked to what it
amends, pushed to the machine's watchers."""

from __future__ import annotations

from litestar import post
from litestar.datastructures import State

from rae_edge.memory.models import CorrectionOut
from rae_edge.node import EdgeNode
from rae_edge.tokens import Principal
from rae_sync.domain import Role
from rae_tablet_api.audit_hook import actor_of
from rae_tablet_api.auth import require
from rae_tablet_api.schemas import CorrectionIn


@post("/api/v1/corrections", status_code=201, sync_to_thread=True, tags=["corrections"],
      summary="Add a correction")
def add_correction(data: CorrectionIn, principal: Principal, state: State) -> CorrectionOut:
    require(principal, Role.TECHNICIAN)
    node: EdgeNode = state.node
    c = node.memory.add_correction(principal.tenant_id, machine_id=data.machine_id,
                                   text=data.text, target_id=data.target_id,
                                   author=actor_of(principal))
    return CorrectionOut.of(c)


ROUTES = [add_correction]
