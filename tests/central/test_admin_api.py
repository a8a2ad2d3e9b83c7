"""The admin JSON API on a real PostgreSQL, connected as the application's role (row
level security binds it): token guard; the operator token sees every tenant's node health
and dead-letter reasons but no content; a tenant token sees its own tenant only; revoke."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient
from pydantic import ValidationError

from rae_central.admin.app import create_app
from rae_central.config import CentralSettings
from rae_central.db.engine import make_engine
from rae_central.store import Accepted, CentralStore, NodeStatus
from tests.central.test_store import OTHER, A, _cor, store  # noqa: F401  (fixture)

TOKEN = "admin-secret-token"
ACME = "acme-console-token"
GLOBEX = "globex-console-token"


def test_admin_api(store: CentralStore, pg_url: str) -> None:  # noqa: F811
    store.ingest([_cor(A, 1), _cor(A, 3), _cor(OTHER, 1),
                  Accepted(A, "st-9", 4, "h", "node_status", "status",
                           status=NodeStatus(outbox_depth=12, lag_s=4.0))])
    store.dead_letter([("rae/v1/acme/plant-1/node-a/up/correction", b"{acme-secret",
                        "malformed JSON", A),
                       ("rae/v1/globex/plant-9/node-x/up/correction", b"{globex-secret",
                        "bad_signature", OTHER),
                       ("garbage/topic", b"???", "malformed: topic", None)])
    app_engine = make_engine(CentralSettings(database_url=pg_url).app_url())
    app_store = CentralStore(app_engine)
    tokens = {"acme": ACME, "globex": GLOBEX}
    with TestClient(create_app(app_store, TOKEN, tenant_tokens=tokens)) as c:
        assert c.get("/health").json()["status"] == "ok"
        assert "sync console" in c.get("/").text
        r = c.get("/api/v1/admin/nodes")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert c.get("/api/v1/admin/nodes",
                     headers={"Authorization": "Bearer wrong"}).status_code == 401
        # the operator: every tenant's node health, reasons of every dead letter, no content
        h = {"Authorization": f"Bearer {TOKEN}"}
        ov = c.get("/api/v1/admin/overview", headers=h).json()
        assert ov["scope"] == "operator"
        nodes = {n["node_id"]: n for n in ov["nodes"]}
        assert set(nodes) == {"node-a", "node-b", "node-x"}
        a = nodes["node-a"]
        assert (a["last_seq"], a["max_seq"], a["gaps"], a["outbox_depth"], a["lag_s"]) == (
            1, 4, [[2, 2]], 12, 4.0)
        assert a["dead_letters"] == 1 and nodes["node-x"]["dead_letters"] == 1
        dl = c.get("/api/v1/admin/dead-letters", headers=h).json()
        assert {d["reason"] for d in dl} == {"malformed JSON", "bad_signature",
                                             "malformed: topic"}
        assert all("payload_head" not in d for d in dl)
        assert "secret" not in c.get("/api/v1/admin/dead-letters", headers=h).text
        assert c.get("/api/v1/admin/corrections", headers=h).json() == []
        # a tenant token: its own tenant only, with content; a ?tenant= of another is refused
        h = {"Authorization": f"Bearer {ACME}"}
        ov = c.get("/api/v1/admin/overview", headers=h).json()
        assert ov["scope"] == "acme"
        assert {n["node_id"] for n in ov["nodes"]} == {"node-a", "node-b"}
        assert [d["payload_head"] for d in ov["dead_letters"]] == ["{acme-secret"]
        assert {x["id"] for x in ov["corrections"]} == {"cor-node-a-1", "cor-node-a-3"}
        assert c.get("/api/v1/admin/corrections?tenant=globex", headers=h).status_code == 404
        r = c.post("/api/v1/admin/nodes/globex/plant-9/node-x/revoke", headers=h)
        assert r.status_code == 404
        assert store.node_state(OTHER) == "active"
        g = c.get("/api/v1/admin/corrections",
                  headers={"Authorization": f"Bearer {GLOBEX}"}).json()
        assert [x["id"] for x in g] == ["cor-node-x-1"]
        # revoke: a tenant its own node, the operator any node
        r = c.post("/api/v1/admin/nodes/acme/plant-1/node-a/revoke", headers=h)
        assert r.status_code == 200 and r.json()["revoked_at"]
        assert A not in store.active_keys()
        h = {"Authorization": f"Bearer {TOKEN}"}
        r = c.post("/api/v1/admin/nodes/globex/plant-9/node-x/revoke", headers=h)
        assert r.status_code == 200 and store.node_state(OTHER) == "revoked"
        r = c.post("/api/v1/admin/nodes/acme/plant-1/nope/revoke", headers=h)
        assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    with TestClient(create_app(app_store, None)) as c:
        r = c.get("/api/v1/admin/nodes", headers={"Authorization": "Bearer x"})
        assert r.status_code == 503 and "RAE_CENTRAL_ADMIN__TOKEN" in r.json()["error"]["message"]
    app_engine.dispose()


def test_every_content_read_is_audited(store: CentralStore, pg_url: str) -> None:  # noqa: F811
    """A tenant token's reads of corrections, dead letters (payload heads), drift alerts,
    verdicts and audit chains are each recorded in central's admin audit, with the ids read; the
    operator's health view (no content) is not a content read."""
    store.ingest([_cor(A, 1), _cor(A, 2)])
    store.dead_letter([("rae/v1/acme/plant-1/node-a/up/correction", b"{x", "malformed", A)])
    app_engine = make_engine(CentralSettings(database_url=pg_url).app_url())
    app_store = CentralStore(app_engine)
    with TestClient(create_app(app_store, TOKEN, tenant_tokens={"acme": ACME})) as c:
        op = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/api/v1/admin/overview", headers=op).status_code == 200
        assert not [e for e in store.admin_audit("acme") if e["action"].startswith("read.")]
        h = {"Authorization": f"Bearer {ACME}"}
        got = c.get("/api/v1/admin/corrections", headers=h).json()
        assert sorted(x["id"] for x in got) == ["cor-node-a-1", "cor-node-a-2"]
        c.get("/api/v1/admin/overview", headers=h)
    reads = [e for e in store.admin_audit("acme") if e["action"].startswith("read.")]
    actions = sorted(e["action"] for e in reads)
    assert actions == ["read.audit_chains", "read.corrections", "read.corrections",
                       "read.dead_letters", "read.drift_alerts", "read.feedback"], actions
    [first] = [e for e in reversed(reads) if e["action"] == "read.corrections"][:1]
    assert first["actor"] == "admin-console:acme"
    assert sorted(first["details"]["ids"]) == ["cor-node-a-1", "cor-node-a-2"]
    assert first["resource"] == "/api/v1/admin/corrections"
    app_engine.dispose()


def test_console_serves_https_off_loopback() -> None:
    with pytest.raises(ValidationError, match="plain HTTP is refused off loopback"):
        CentralSettings(admin={"host": "0.0.0.0"})
    with pytest.raises(ValidationError, match="go together"):
        CentralSettings(admin={"host": "127.0.0.1", "tls_cert": "c.pem"})
    ok = CentralSettings(admin={"host": "0.0.0.0", "tls_cert": "c.pem",
                                "tls_key": "k.pem"})
    assert ok.admin.tls_cert is not None
    assert CentralSettings(admin={"host": "127.0.0.1"}).admin.tls_cert is None
