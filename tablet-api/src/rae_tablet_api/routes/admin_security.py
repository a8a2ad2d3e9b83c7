"""Admin endpoints behind ``rae-edge audit`` and ``rae-edge token`` when a running node
holds the data folder (DuckDB lets one process open it). Admin role; a tenant's admin sees
and manages its own tenant only.

- ``GET /api/v1/admin/audit/verify``: the caller tenant's audit chain checked;
- ``GET /api/v1/admin/tokens``: tokens of the tenant (hash prefixes, never tokens);
- ``POST /api/v1/admin/tokens`` ``{"role", "name", "tenant"?}``: a new token, shown once
  (``tenant``: another tenant's, only over the local admin channel);
- ``POST /api/v1/admin/tokens/revoke`` ``{"hash_prefix"}`` or ``{"all_for": NAME}``.
"""

from __future__ import annotations

from typing import Any

from litestar import get, post
from pydantic import BaseModel, ConfigDict, Field

from rae_edge.audit import AuditLog
from rae_edge.commands.token import list_tokens, revoke
from rae_edge.errors import PermissionDeniedError
from rae_edge.store.duck import DuckStore
from rae_edge.tokens import Principal, create_token
from rae_sync.domain import Role
from rae_tablet_api import guards
from rae_tablet_api.auth import is_local_admin


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role
    name: str = Field(default="", max_length=200)
    tenant: str | None = Field(default=None, min_length=1, max_length=200,
                               description="default: the caller's tenant")


class Revoke(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hash_prefix: str | None = Field(default=None, max_length=64)
    all_for: str | None = Field(default=None, max_length=200)


@get("/api/v1/admin/audit/verify", sync_to_thread=True, tags=["admin"], guards=guards.ADMIN,
     summary="Verify this tenant's audit chain")
def audit_verify(duck: DuckStore, principal: Principal) -> dict[str, Any]:
    r = AuditLog(duck).verify(principal.tenant_id)
    return {"ok": r.ok, "checked": r.checked, "first_broken_seq": r.first_broken_seq,
            "reason": r.reason, "head_seq": r.heads.get(principal.tenant_id)}


@get("/api/v1/admin/tokens", sync_to_thread=True, tags=["admin"], guards=guards.ADMIN,
     summary="List tokens")
def tokens_list(duck: DuckStore, principal: Principal) -> dict[str, Any]:
    return {"tokens": list_tokens(duck, principal.tenant_id)}


@post("/api/v1/admin/tokens", sync_to_thread=True, tags=["admin"], guards=guards.ADMIN,
      status_code=201,
      summary="Create a token (shown once)")
def tokens_create(duck: DuckStore, principal: Principal, data: NewToken) -> dict[str, Any]:
    tenant = data.tenant or principal.tenant_id
    if tenant != principal.tenant_id and not is_local_admin(principal):
        raise PermissionDeniedError(f"an admin token manages its own tenant "
                                    f"({principal.tenant_id}) only, not {tenant!r}")
    token = create_token(duck, tenant, data.role, data.name)
    return {"token": token, "tenant": tenant, "role": data.role.value, "name": data.name}


@post("/api/v1/admin/tokens/revoke", sync_to_thread=True, tags=["admin"], guards=guards.ADMIN,
      status_code=200,
      summary="Revoke tokens")
def tokens_revoke(duck: DuckStore, principal: Principal, data: Revoke) -> dict[str, Any]:
    return {"revoked": revoke(duck, data.hash_prefix, data.all_for, principal.tenant_id)}


ROUTES = [audit_verify, tokens_list, tokens_create, tokens_revoke]
