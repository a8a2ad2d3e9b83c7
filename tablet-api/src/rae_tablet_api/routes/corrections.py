"""``POST /api/v1/corrections`` (technician): a typed correction becomes reflective memory
at once: stored with its sync outbox row in one transaction, indexed, linked to what it
amends, pushed to the machine's watchers."""

from __future__ import annotations

from litestar import post

from rae_edge.audit import actor_of
from rae_edge.memory import MemoryService
from rae_edge.memory.models import CorrectionOut
from rae_edge.tokens import Principal
from rae_tablet_api import guards
from rae_tablet_api.schemas import CorrectionIn


@post("/api/v1/corrections", status_code=201, sync_to_thread=True, tags=["corrections"],
      guards=guards.TECHNICIAN, summary="Add a correction")
def add_correction(data: CorrectionIn, principal: Principal,
                   memory: MemoryService) -> CorrectionOut:
    c = memory.add_correction(principal.tenant_id, machine_id=data.machine_id, text=data.text,
                              target_id=data.target_id, author=actor_of(principal))
    return CorrectionOut.of(c)


ROUTES = [add_correction]
