"""Health needs no token; everything else answers 401 in the INTERFACE error shape."""

from __future__ import annotations

from litestar.testing import TestClient

from rae_edge.node import EdgeNode
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
