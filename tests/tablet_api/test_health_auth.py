"""Health needs no token; everything else answers 401 in the INTERFACE error shape."""

from __future__ import annotations

from litestar.testing import TestClient

from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token
from rae_sync.domain import Role
from rae_tablet_api import guards
from rae_tablet_api.app import create_app


def test_health_and_openapi(node: EdgeNode) -> None:
    with TestClient(create_app(node)) as client:
        r = client.get("/api/v1/health")
        assert r.status_code == 200
        assert r.json()["status"] == "ok"
        assert client.get("/api/v1/schema/openapi.json").json()["info"]["title"]


def test_unknown_path_uses_error_shape(node: EdgeNode) -> None:
    with TestClient(create_app(node)) as client:
        r = client.get("/api/v1/nope")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"


def test_every_api_route_names_its_least_role(node: EdgeNode) -> None:
    """A route under /api/v1 (but health and the OpenAPI document) carries one role guard
    from ``rae_tablet_api.guards``; the push socket checks the same rule itself."""
    known = {g for g in (*guards.TECHNICIAN, *guards.SUPERVISOR, *guards.ADMIN)}
    unguarded = []
    checked = 0
    for route in create_app(node).routes:
        if not route.path.startswith("/api/v1/") or route.path in (
                "/api/v1/health", "/api/v1/push") or route.path.startswith("/api/v1/schema"):
            continue
        for handler in route.route_handlers:  # type: ignore[union-attr]
            if handler.handler_name == "options_handler":  # CORS preflight, Litestar's own
                continue
            checked += 1
            if len([g for g in handler.resolve_guards() if g in known]) != 1:
                unguarded.append(f"{route.path} {handler.handler_name}")
    assert checked >= 20 and unguarded == []


def test_guards_answer_before_the_body_is_read(node: EdgeNode) -> None:
    """401 without a token and 403 for a weak role come first, whatever the body holds."""
    tech = create_token(node.duck, node.tenant_id, Role.TECHNICIAN, "t")
    with TestClient(create_app(node)) as client:
        r = client.post("/api/v1/machines", content=b"not json")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = client.post("/api/v1/machines", content=b"not json",
                        headers={"Authorization": f"Bearer {tech}"})
        assert r.status_code == 403 and "admin role" in r.json()["error"]["message"]
