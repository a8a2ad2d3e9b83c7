"""``GET /api/v1/jobs/{id}``: a background job's status, progress and result (document
ingest jobs, started by ``POST /api/v1/documents``)."""

from __future__ import annotations

from litestar import get
from litestar.datastructures import State

from rae_edge.node import EdgeNode
from rae_edge.tokens import Principal
from rae_sync.domain import Role
from rae_tablet_api.auth import require
from rae_tablet_api.schemas import JobOut


@get("/api/v1/jobs/{job_id:str}", sync_to_thread=True, tags=["documents"],
     summary="A job's progress and result")
def get_job(job_id: str, principal: Principal, state: State) -> JobOut:
    """``progress``: file and items done of those known so far; ``result`` once done:
    added, skipped as duplicate, rejected with the reason for each."""
    require(principal, Role.TECHNICIAN)
    node: EdgeNode = state.node
    return JobOut(**node.memory.jobs.get(principal.tenant_id, job_id))


ROUTES = [get_job]
