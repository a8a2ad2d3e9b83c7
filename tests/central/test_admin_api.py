"""The admin JSON API on a real PostgreSQL: token guard, nodes/dead letters/corrections,
revoke (then the node's key is no longer active)."""

from __future__ import annotations

from litestar.testing import TestClient

from rae_central.admin.app import create_app
from rae_central.store import CentralStore, NodeStatus
from tests.central.test_store import A, _cor, store  # noqa: F401  (fixture)

TOKEN = "admin-secret-token"


def test_admin_api(store: CentralStore) -> None:  # noqa: F811
    from rae_central.store import Accepted

    store.ingest([_cor(A, 1), _cor(A, 3),
                  Accepted(A, "st-9", 4, "h", "node_status", "status",
                           status=NodeStatus(outbox_depth=12, lag_s=4.0))])
    store.dead_letter([("rae/v1/acme/plant-1/node-a/up/correction", b"{", "malformed JSON", A)])
    with TestClient(create_app(store, TOKEN)) as c:
        assert c.get("/health").json()["status"] == "ok"
        assert "sync console" in c.get("/").text
        r = c.get("/api/v1/admin/nodes")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert c.get("/api/v1/admin/nodes",
                     headers={"Authorization": "Bearer wrong"}).status_code == 401
        h = {"Authorization": f"Bearer {TOKEN}"}
        nodes = {n["node_id"]: n for n in c.get("/api/v1/admin/nodes", headers=h).json()}
        a = nodes["node-a"]
        assert (a["last_seq"], a["max_seq"], a["gaps"], a["outbox_depth"], a["lag_s"]) == (
            1, 4, [[2, 2]], 12, 4.0)
        assert a["dead_letters"] == 1
        dl = c.get("/api/v1/admin/dead-letters", headers=h).json()
        assert dl[0]["reason"] == "malformed JSON"
        cors = c.get("/api/v1/admin/corrections", headers=h).json()
        assert {x["id"] for x in cors} == {"cor-node-a-1", "cor-node-a-3"}
        r = c.post("/api/v1/admin/nodes/acme/plant-1/node-a/revoke", headers=h)
        assert r.status_code == 200 and r.json()["revoked_at"]
        assert A not in store.active_keys()
        r = c.post("/api/v1/admin/nodes/acme/plant-1/nope/revoke", headers=h)
        assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    with TestClient(create_app(store, None)) as c:
        r = c.get("/api/v1/admin/nodes", headers={"Authorization": "Bearer x"})
        assert r.status_code == 503 and "RAE_CENTRAL_ADMIN__TOKEN" in r.json()["error"]["message"]
