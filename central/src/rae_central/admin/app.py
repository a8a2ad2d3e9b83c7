"""The admin sync console: one page and a small JSON API under ``/api/v1/admin``.

Every API call needs ``Authorization: Bearer <token>``, one of two kinds (why: see
:mod:`rae_central.rls`):

- a **tenant token** (``admin.tenant_tokens``): that tenant's nodes, dead letters (with
  payload heads), corrections, verdicts ("this fixed it" / "not relevant"), open drift
  alerts with their evidence, each node's audit chain verification, and revoking its
  nodes; every read of that content is recorded in central's admin audit (who, which
  ids) before it is answered; every query runs under :func:`rae_central.rls.set_tenant`,
  so row-level security keeps other tenants out;
- the **operator token** (``admin.token``, ``RAE_CENTRAL_ADMIN__TOKEN``): the health of
  every tenant's nodes and the dead letters' reasons (no payloads, no corrections'
  text, no drift alerts, no audit chains: ``rae-central audit verify`` is the
  operator's), and revoking any node.

With no token configured the API answers 503 to everyone rather than run open. Errors
use the INTERFACE shape ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import hmac
from importlib import resources
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.params import FromPath, FromQuery

from rae_central.metrics import metrics
from rae_central.store import AWAY_AFTER_S, CentralStore, NodeNotFoundError

_WEB = resources.files("rae_central.admin") / "web"


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    code = {400: "bad_request", 401: "unauthorized", 404: "not_found",
            503: "unavailable"}.get(exc.status_code, "error")
    return Response(error_body(code, str(exc.detail)), status_code=exc.status_code)


def _not_found(_: Request[Any, Any, Any], exc: NodeNotFoundError) -> Response[Any]:
    return Response(error_body("not_found", str(exc)), status_code=404)


OPERATOR = "*"  # the principal of the operator token


def _principal(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """``OPERATOR``, the tenant a tenant token belongs to, or ``None``."""
    given = connection.headers.get("authorization", "")
    if not given.startswith("Bearer "):
        return None
    got = given[7:].encode()
    found: str | None = None
    token: str | None = connection.app.state.admin_token
    # Every token is compared (constant time each), so timing tells nothing of which.
    if token and hmac.compare_digest(got, token.encode()):
        found = OPERATOR
    tenants: dict[str, str] = connection.app.state.tenant_tokens
    for tenant, t in tenants.items():
        if hmac.compare_digest(got, t.encode()):
            found = tenant
    return found


def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if not connection.app.state.admin_token and not connection.app.state.tenant_tokens:
        raise HTTPException(status_code=503, detail="no admin token is configured: set "
                            "RAE_CENTRAL_ADMIN__TOKEN (or admin.token) and restart")
    who = _principal(connection)
    if who is None:
        raise NotAuthorizedException(detail="a valid admin bearer token is required")
    connection.scope["rae_principal"] = who  # type: ignore[typeddict-unknown-key]


def _who(request: Request[Any, Any, Any]) -> str:
    who: str = request.scope["rae_principal"]  # type: ignore[typeddict-item]
    return who


def _scope(request: Request[Any, Any, Any], tenant: str | None) -> str | None:
    """The tenant a tenant token may see (a ``?tenant=`` of another is refused)."""
    who = _who(request)
    if who == OPERATOR:
        return tenant
    if tenant and tenant != who:
        raise HTTPException(status_code=404, detail=f"no tenant {tenant!r} for this token")
    return who


def _store(state: State) -> CentralStore:
    store: CentralStore = state.store
    return store


@get("/health", sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok", "service": "rae-central"}


@get("/", media_type="text/html", sync_to_thread=False, include_in_schema=False)
def console_page() -> str:
    return (_WEB / "console.html").read_text(encoding="utf-8")


@get("/console.js", media_type="text/javascript", sync_to_thread=False,
     include_in_schema=False)
def console_js() -> str:
    return (_WEB / "console.js").read_text(encoding="utf-8")


@get("/api/v1/admin/nodes", guards=[admin_guard], sync_to_thread=True)
def list_nodes(state: State, request: Request[Any, Any, Any],
               tenant: FromQuery[str | None] = None) -> list[dict[str, Any]]:
    """Every enrolled node: last seen, outbox depth, lag, last seq, gaps, dead letters,
    what central still owes it (``down_pending``, ``down_oldest_at``, its own position
    ``down_cursor``), ``away`` (silent past ``ingest.away_after_s``) and ``flag`` (e.g. a
    clock far ahead)."""
    return _nodes(_store(state), request, tenant)


def _nodes(store: CentralStore, request: Request[Any, Any, Any],
           tenant: str | None) -> list[dict[str, Any]]:
    away: float = request.app.state.away_after_s
    if _who(request) == OPERATOR:
        return [n for n in store.fleet_overview(away)
                if not tenant or n["tenant_id"] == tenant]
    return store.nodes_overview(_scope(request, tenant), away)


def _audited(store: CentralStore, request: Request[Any, Any, Any], action: str,
             rows: list[dict[str, Any]], key: str = "id") -> list[dict[str, Any]]:
    """Records a read of tenant content (which rows, by whom) in central's admin audit
    before the rows are answered."""
    tenant = _who(request)
    store.record_read(tenant, f"admin-console:{tenant}", action, request.url.path,
                      {"ids": [str(r.get(key)) for r in rows][:1000], "count": len(rows)})
    return rows


def _dead(store: CentralStore, request: Request[Any, Any, Any], limit: int,
          tenant: str | None) -> list[dict[str, Any]]:
    if _who(request) == OPERATOR:
        return [d for d in store.fleet_dead_letters(limit if not tenant else 1000)
                if not tenant or d["tenant_id"] == tenant][:limit]
    return _audited(store, request, "read.dead_letters",
                    store.dead_letters(limit, _scope(request, tenant)))


def _corrections(store: CentralStore, request: Request[Any, Any, Any], limit: int,
                 tenant: str | None) -> list[dict[str, Any]]:
    if _who(request) == OPERATOR:
        return []  # a tenant's knowledge: its own console token only
    return _audited(store, request, "read.corrections",
                    store.recent_corrections(limit, _scope(request, tenant)))


@get("/api/v1/admin/dead-letters", guards=[admin_guard], sync_to_thread=True)
def list_dead_letters(state: State, request: Request[Any, Any, Any], limit: FromQuery[int] = 100,
                      tenant: FromQuery[str | None] = None) -> list[dict[str, Any]]:
    """The newest dead letters with their reasons (payload heads for a tenant token)."""
    return _dead(_store(state), request, min(max(limit, 1), 1000), tenant)


@get("/api/v1/admin/corrections", guards=[admin_guard], sync_to_thread=True)
def list_corrections(state: State, request: Request[Any, Any, Any], limit: FromQuery[int] = 50,
                     tenant: FromQuery[str | None] = None) -> list[dict[str, Any]]:
    """The stream of recently received corrections, newest first (a tenant token's own;
    the operator token sees none)."""
    return _corrections(_store(state), request, min(max(limit, 1), 1000), tenant)


def _feedback(store: CentralStore, request: Request[Any, Any, Any], limit: int,
              tenant: str | None) -> list[dict[str, Any]]:
    if _who(request) == OPERATOR:
        return []  # a tenant's knowledge, as corrections
    from rae_central.feedback import recent_feedback

    return _audited(store, request, "read.feedback",
                    recent_feedback(store, _scope(request, tenant), limit))


@get("/api/v1/admin/feedback", guards=[admin_guard], sync_to_thread=True)
def list_feedback(state: State, request: Request[Any, Any, Any], limit: FromQuery[int] = 50,
                  tenant: FromQuery[str | None] = None) -> list[dict[str, Any]]:
    """The verdicts ("this fixed it" / "not relevant") received most recently, newest
    first, each fanned out to the tenant's other nodes (a tenant token's own; the
    operator token sees none)."""
    return _feedback(_store(state), request, min(max(limit, 1), 1000), tenant)


@get("/api/v1/admin/overview", guards=[admin_guard], sync_to_thread=True)
def overview(state: State, request: Request[Any, Any, Any]) -> dict[str, Any]:
    """What the console shows, in one call; ``scope`` is ``operator`` or the tenant."""
    s = _store(state)
    who = _who(request)
    return {"scope": "operator" if who == OPERATOR else who,
            "nodes": _nodes(s, request, None), "dead_letters": _dead(s, request, 50, None),
            "corrections": _corrections(s, request, 30, None),
            "feedback": _feedback(s, request, 30, None),
            "drift_alerts": _drift(s, request, None), "audit": _audit(s, request, None),
            "indexer": state.get("indexer_stats", lambda: {})()}


def _drift(store: CentralStore, request: Request[Any, Any, Any],
           tenant: str | None) -> list[dict[str, Any]]:
    if _who(request) == OPERATOR:
        return []  # evidence is a tenant's knowledge: its own console token only
    from rae_central.drift_alerts import open_alerts

    scoped = _scope(request, tenant)
    return _audited(store, request, "read.drift_alerts",
                    open_alerts(store, scoped) if scoped else [])


def _audit(store: CentralStore, request: Request[Any, Any, Any],
           tenant: str | None) -> list[dict[str, Any]]:
    if _who(request) == OPERATOR:
        return []  # reading the entries is the tenant's (the CLI runs for the operator)
    from rae_central.audit_verify import verify

    scoped = _scope(request, tenant)
    return _audited(store, request, "read.audit_chains",
                    [r.to_json() for r in verify(store, scoped, incremental=True)]
                    if scoped else [], key="node")


@get("/api/v1/admin/drift-alerts", guards=[admin_guard], sync_to_thread=True)
def list_drift_alerts(state: State, request: Request[Any, Any, Any],
                      tenant: FromQuery[str | None] = None) -> list[dict[str, Any]]:
    """The tenant's open drift alerts with their evidence: the corrections (text,
    machine, author) and the manual sections they contradict (a tenant token's own; the
    operator token sees none)."""
    return _drift(_store(state), request, tenant)


@get("/api/v1/admin/audit", guards=[admin_guard], sync_to_thread=True)
def audit_chains(state: State, request: Request[Any, Any, Any],
                 tenant: FromQuery[str | None] = None) -> list[dict[str, Any]]:
    """Each node's synced audit chain, verified incrementally: ``ok``, ``entries``,
    ``broken_seq``, ``reason`` and the console's ``text`` (a tenant token's own nodes)."""
    return _audit(_store(state), request, tenant)


@post("/api/v1/admin/nodes/{tenant:str}/{site:str}/{node:str}/revoke", guards=[admin_guard],
      sync_to_thread=True, status_code=200)
def revoke_node(state: State, request: Request[Any, Any, Any], tenant: FromPath[str],
                site: FromPath[str], node: FromPath[str]) -> dict[str, Any]:
    """Revokes a node: its messages are refused (dead-lettered) from now on."""
    who = _who(request)
    if who != OPERATOR and who != tenant:
        raise NodeNotFoundError(f"no enrolled node {tenant}/{site}/{node}")
    at = _store(state).revoke((tenant, site, node), actor=f"admin-console:{who}")
    return {"tenant_id": tenant, "site_id": site, "node_id": node,
            "revoked_at": at.isoformat()}


def create_app(store: CentralStore, admin_token: str | None, indexer_stats: Any = None,
               tenant_tokens: dict[str, str] | None = None,
               away_after_s: float = AWAY_AFTER_S) -> Litestar:
    """``admin_token``: the operator's; ``tenant_tokens``: tenant id -> its token;
    ``away_after_s``: a node silent this long shows as away (``ingest.away_after_s``)."""
    state = State({"store": store, "admin_token": admin_token,
                   "tenant_tokens": dict(tenant_tokens or {}), "away_after_s": away_after_s})
    if indexer_stats is not None:
        state["indexer_stats"] = indexer_stats
    return Litestar(
        route_handlers=[health, console_page, console_js, list_nodes, list_dead_letters,
                        list_corrections, list_feedback, overview, revoke_node, list_drift_alerts,
                        audit_chains, metrics],
        state=state,
        exception_handlers={HTTPException: _http_error, NodeNotFoundError: _not_found},
        openapi_config=OpenAPIConfig(title="RAE central admin API", version="1.0.0",
                                     path="/api/v1/schema"),
    )
