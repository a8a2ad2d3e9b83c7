"""Briefings: ``GET /api/v1/machines/{code}/briefing`` (``code`` = a QR payload or machine
id) and ``GET /api/v1/briefing?code=`` (the same, for payloads with ``/`` in them, such as
URLs). Each briefing is also pushed to the tablets watching the machine."""

from __future__ import annotations

from datetime import datetime

from litestar import get

from rae_edge.memory import MemoryService
from rae_edge.memory.models import Briefing
from rae_edge.tokens import Principal
from rae_tablet_api import guards
from rae_tablet_api.schemas import utc_or_none

_DOC = ("The machine's past incidents (the current ``error_code``'s first, then newest "
        "first; each with what fixed it and every correction that amends it: the "
        "correction wins, the superseded fix stays visible), recurring problems, manual "
        "sections for its error codes, open drift alerts and a one-paragraph summary. "
        "``as_of`` (ISO-8601) shows it as it was then.")


def _briefing(memory: MemoryService, principal: Principal, code: str, as_of: datetime | None,
              error_code: str | None) -> Briefing:
    return memory.briefing(principal.tenant_id, code, as_of=utc_or_none(as_of),
                                error_code=error_code)


@get("/api/v1/machines/{code:str}/briefing", sync_to_thread=True, tags=["briefing"],
     guards=guards.TECHNICIAN, summary="Briefing of a scanned machine", description=_DOC)
def briefing(code: str, principal: Principal, memory: MemoryService,
             as_of: datetime | None = None, error_code: str | None = None) -> Briefing:
    return _briefing(memory, principal, code, as_of, error_code)


@get("/api/v1/briefing", sync_to_thread=True, tags=["briefing"], guards=guards.TECHNICIAN,
     summary="Briefing by QR payload (query form)", description=_DOC)
def briefing_by_query(code: str, principal: Principal, memory: MemoryService,
                      as_of: datetime | None = None,
                      error_code: str | None = None) -> Briefing:
    return _briefing(memory, principal, code, as_of, error_code)


ROUTES = [briefing, briefing_by_query]
