"""``GET /api/v1/jobs/{id}``: a background job's status, progress and result (document
ingest jobs, started by ``POST /api/v1/documents``)."""

from __future__ import annotations

from litestar import get

from rae_edge.memory.jobs import DocumentJobs
from rae_edge.tokens import Principal
from rae_tablet_api import guards
from rae_tablet_api.schemas import JobOut


@get("/api/v1/jobs/{job_id:str}", sync_to_thread=True, tags=["documents"],
     guards=guards.TECHNICIAN, summary="A job's progress and result")
def get_job(job_id: str, principal: Principal, jobs: DocumentJobs) -> JobOut:
    """``progress``: file and items done of those known so far; ``result`` once done:
    added, skipped as duplicate, rejected with the reason for each."""
    return JobOut(**jobs.get(principal.tenant_id, job_id))


ROUTES = [get_job]
