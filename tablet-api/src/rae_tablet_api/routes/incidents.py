"""``POST /api/v1/incidents`` (supervisor): incidents in; each new one is pushed at once to
its machine's watchers (with the most similar past incident and its fix), then indexed."""

from __future__ import annotations

from litestar import post

from rae_edge.errors import InvalidInputError
from rae_edge.memory import MemoryService
from rae_edge.tokens import Principal
from rae_sync.domain import Incident
from rae_tablet_api import guards
from rae_tablet_api.schemas import IncidentIn, IncidentsOut

MAX_INCIDENTS = 5_000


@post("/api/v1/incidents", status_code=200, sync_to_thread=True, tags=["incidents"],
      guards=guards.SUPERVISOR, summary="Add incidents")
def add_incidents(data: list[IncidentIn], principal: Principal,
                  memory: MemoryService) -> IncidentsOut:
    """Same content again (machine, time, code, symptom, action) is not stored twice."""
    if not data:
        raise InvalidInputError("send a list of one or more incidents")
    if len(data) > MAX_INCIDENTS:
        raise InvalidInputError(f"at most {MAX_INCIDENTS} incidents per request: use "
                                "POST /api/v1/documents for whole error logs")
    incidents = [Incident(tenant_id=principal.tenant_id, **d.model_dump()) for d in data]
    ids, new = memory.add_incidents(principal.tenant_id, incidents)
    new_ids = [i.id for i in new]
    return IncidentsOut(ids=ids, new_ids=new_ids, added=len(new),
                        duplicates=len(incidents) - len(new))


ROUTES = [add_incidents]
