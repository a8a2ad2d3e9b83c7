"""Briefings: ``GET /api/v1/machines/{code}/briefing`` (``code`` = a QR payload or machine
id) and ``GET /api/v1/briefing?code=`` (the same, for payloads with ``/`` in them, such as
URLs). Each briefing is also pushed to the tablets watching the machine."""

from __future__ import annotations

from datetime import datetime

from litestar import get
from litestar.datastructures import State

from rae_edge.memory.models import Briefing
from rae_edge.node import EdgeNode
from rae_edge.tokens import Principal
from rae_sync.domain import Role
from rae_tablet_api.auth import require
from rae_tablet_api.schemas import utc_or_none

_DOC = ("The machine's past incidents (the current ``error_code``'s first, then newest "
        "first; each with what fixed it and every correction that amends it: the "
        "correction wins, the superseded fix stays visible), recurring problems, manual "
        "sections for its error codes, open drift alerts and a one-paragraph summary. "
        "``as_of`` (ISO-8601) shows it as it was then.")


def _briefing(state: State, principal: Principal, code: str, as_of: datetime | None,
              error_code: str | None) -> Briefing:
    require(principal, Role.TECHNICIAN)
    node: EdgeNode = state.node
    return node.memory.briefing(principal.tenant_id, code, as_of=utc_or_none(as_of),
                                error_code=error_code)


@get("/api/v1/machines/{code:str}/briefing", sync_to_thread=True, tags=["briefing"],
     summary="Briefing of a scanned machine", description=_DOC)
def briefing(code: str, principal: Principal, state: State, as_of: datetime | None = None,
             error_code: str | None = None) -> Briefing:
    return _briefing(state, principal, code, as_of, error_code)


@get("/api/v1/briefing", sync_to_thread=True, tags=["briefing"],
     summary="Briefing by QR payload (query form)", description=_DOC)
def briefing_by_query(code: str, principal: Principal, state: State,
                      as_of: datetime | None = None,
                      error_code: str | None = None) -> Briefing:
    return _briefing(state, principal, code, as_of, error_code)


ROUTES = [briefing, briefing_by_query]
