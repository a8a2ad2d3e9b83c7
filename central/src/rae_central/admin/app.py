"""The admin sync console: one page and a small JSON API under ``/api/v1/admin``.

Every API call needs ``Authorization: Bearer <admin token>`` (``admin.token`` in the
settings, ``RAE_CENTRAL_ADMIN__TOKEN`` in the environment). With no token configured the
API answers 503 to everyone rather than run open. Errors use the INTERFACE shape
``{"error": {"code", "message"}}``.
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

from rae_central.store import CentralStore, NodeNotFoundError

_WEB = resources.files("rae_central.admin") / "web"


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    code = {400: "bad_request", 401: "unauthorized", 404: "not_found",
            503: "unavailable"}.get(exc.status_code, "error")
    return Response(error_body(code, str(exc.detail)), status_code=exc.status_code)


def _not_found(_: Request[Any, Any, Any], exc: NodeNotFoundError) -> Response[Any]:
    return Response(error_body("not_found", str(exc)), status_code=404)


def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    token: str | None = connection.app.state.admin_token
    if not token:
        raise HTTPException(status_code=503, detail="no admin token is configured: set "
                            "RAE_CENTRAL_ADMIN__TOKEN (or admin.token) and restart")
    given = connection.headers.get("authorization", "")
    if not (given.startswith("Bearer ") and
            hmac.compare_digest(given[7:].encode(), token.encode())):
        raise NotAuthorizedException(detail="a valid admin bearer token is required")


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
def list_nodes(state: State, tenant: FromQuery[str | None] = None) -> list[dict[str, Any]]:
    """Every enrolled node: last seen, outbox depth, lag, last seq, gaps, dead letters."""
    return _store(state).nodes_overview(tenant)


@get("/api/v1/admin/dead-letters", guards=[admin_guard], sync_to_thread=True)
def list_dead_letters(state: State, limit: FromQuery[int] = 100,
                      tenant: FromQuery[str | None] = None) -> list[dict[str, Any]]:
    """The newest dead letters with their reasons."""
    return _store(state).dead_letters(min(max(limit, 1), 1000), tenant)


@get("/api/v1/admin/corrections", guards=[admin_guard], sync_to_thread=True)
def list_corrections(state: State, limit: FromQuery[int] = 50,
                     tenant: FromQuery[str | None] = None) -> list[dict[str, Any]]:
    """The stream of recently received corrections, newest first."""
    return _store(state).recent_corrections(min(max(limit, 1), 1000), tenant)


@get("/api/v1/admin/overview", guards=[admin_guard], sync_to_thread=True)
def overview(state: State) -> dict[str, Any]:
    """What the console shows, in one call."""
    s = _store(state)
    return {"nodes": s.nodes_overview(), "dead_letters": s.dead_letters(50),
            "corrections": s.recent_corrections(30),
            "indexer": state.get("indexer_stats", lambda: {})()}


@post("/api/v1/admin/nodes/{tenant:str}/{site:str}/{node:str}/revoke", guards=[admin_guard],
      sync_to_thread=True, status_code=200)
def revoke_node(state: State, tenant: FromPath[str], site: FromPath[str],
                node: FromPath[str]) -> dict[str, Any]:
    """Revokes a node: its messages are refused (dead-lettered) from now on."""
    at = _store(state).revoke((tenant, site, node), actor="admin-console")
    return {"tenant_id": tenant, "site_id": site, "node_id": node,
            "revoked_at": at.isoformat()}


def create_app(store: CentralStore, admin_token: str | None,
               indexer_stats: Any = None) -> Litestar:
    state = State({"store": store, "admin_token": admin_token})
    if indexer_stats is not None:
        state["indexer_stats"] = indexer_stats
    return Litestar(
        route_handlers=[health, console_page, console_js, list_nodes, list_dead_letters,
                        list_corrections, overview, revoke_node],
        state=state,
        exception_handlers={HTTPException: _http_error, NodeNotFoundError: _not_found},
        openapi_config=OpenAPIConfig(title="RAE central admin API", version="1.0.0",
                                     path="/api/v1/schema"),
    )
