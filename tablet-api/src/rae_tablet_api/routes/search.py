"""``GET /api/v1/search``: hybrid search (vector + full text, fused) over the tenant's
memories; corrections boosted, superseded memories demoted and marked ``superseded_by``."""

from __future__ import annotations

from datetime import datetime

from litestar import get

from rae_edge.memory import MemoryService
from rae_edge.memory.models import SearchResult
from rae_edge.tokens import Principal
from rae_tablet_api import guards
from rae_tablet_api.schemas import utc_or_none


@get("/api/v1/search", sync_to_thread=True, tags=["search"], guards=guards.TECHNICIAN,
     summary="Search memories")
def search(q: str, principal: Principal, memory: MemoryService, machine_id: str | None = None,
           kind: str | None = None, k: int = 10, as_of: datetime | None = None,
           ) -> SearchResult:
    """``kind``: incident, manual, shift, workorder or correction (comma-separated for
    several). With ``machine_id``: that machine's memories and the general ones (manuals).
    ``as_of``: only what was known then."""
    return memory.search(principal.tenant_id, q, machine_id=machine_id or None, kind=kind,
                         k=k, as_of=utc_or_none(as_of))


ROUTES = [search]
