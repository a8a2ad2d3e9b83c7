"""Machines: ``POST /api/v1/machines`` (admin: register or update) and
``GET /api/v1/machines`` (the tenant's machines)."""

from __future__ import annotations

from litestar import get, post

from rae_edge.errors import ConflictError, InvalidInputError
from rae_edge.memory.models import MachineOut
from rae_edge.store.duck import DuckStore
from rae_edge.tokens import Principal
from rae_sync.domain import Machine
from rae_tablet_api import guards
from rae_tablet_api.schemas import MachineIn

MAX_MACHINES = 10_000


@post("/api/v1/machines", status_code=200, sync_to_thread=True, tags=["machines"],
      guards=guards.ADMIN, summary="Register or update machines")
def upsert_machines(data: list[MachineIn], principal: Principal,
                    duck: DuckStore) -> list[MachineOut]:
    """Upserts by id; a QR code already printed for another machine is a 409."""
    if not data:
        raise InvalidInputError("send a list of one or more machines")
    if len(data) > MAX_MACHINES:
        raise InvalidInputError(f"at most {MAX_MACHINES} machines per request")
    tenant = principal.tenant_id
    seen: dict[str, str] = {}
    for m in data:
        if seen.setdefault(m.qr_code, m.id) != m.id:
            raise ConflictError(f"QR code {m.qr_code!r} is given to both {seen[m.qr_code]!r} "
                                f"and {m.id!r}")
    ids = {m.id for m in data}
    for other in duck.list_machines(tenant):
        if other.id not in ids and other.qr_code in seen:
            raise ConflictError(f"QR code {other.qr_code!r} already belongs to machine "
                                f"{other.id!r}")
    machines = [Machine(tenant_id=tenant, **m.model_dump()) for m in data]
    duck.upsert_machines(machines)
    return [MachineOut.of(m) for m in machines]


@get("/api/v1/machines", sync_to_thread=True, tags=["machines"], guards=guards.TECHNICIAN,
     summary="List machines")
def list_machines(principal: Principal, duck: DuckStore) -> list[MachineOut]:
    return [MachineOut.of(m) for m in duck.list_machines(principal.tenant_id)]


ROUTES = [upsert_machines, list_machines]
