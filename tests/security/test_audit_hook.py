"""The audit middleware: who/what/when/which ids for every authenticated call, never the
token; a call that cannot be put on record is not served."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.testing import TestClient

from rae_edge.audit import AuditLog
from rae_edge.node import EdgeNode
from rae_edge.tokens import Principal, create_token, hash_token
from rae_sync.domain import Role
from rae_tablet_api.app import create_app
from rae_tablet_api.audit_hook import AuditMiddleware, memory_ids
from rae_tablet_api.auth import provide_principal


@get("/api/v1/probe", sync_to_thread=False)
def probe(principal: Principal) -> dict[str, Any]:
    return {"machine": {"id": "M-1"}, "hits": [{"id": "inc_a", "text": "x"},
                                               {"id": "man_b", "nested": {"id": "cor_c"}}]}


@post("/api/v1/probe", sync_to_thread=False)
def probe_write(principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    return {"ids": ["inc_1", "inc_2"]}


def _app(node: EdgeNode) -> Litestar:
    return Litestar([probe, probe_write], dependencies={"principal": Provide(provide_principal)},
                    state=State({"node": node}), middleware=[AuditMiddleware(node)])


def test_memory_ids_collects_nested_ids() -> None:
    body = {"id": "a", "items": [{"id": "b"}, {"x": {"id": "c"}}], "ids": ["d", 3]}
    assert sorted(memory_ids(body)) == ["a", "b", "c", "d"]


def test_reads_and_writes_are_recorded(node: EdgeNode) -> None:
    token = create_token(node.duck, "acme", Role.TECHNICIAN, "tablet-7")
    with TestClient(_app(node)) as client:
        h = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/probe?q=pump&token=leak", headers=h).status_code == 200
        assert client.post("/api/v1/probe", json={"a": 1}, headers=h).status_code == 201
        assert client.get("/api/v1/probe").status_code == 401  # no token: not recorded
        assert client.get("/api/v1/probe",
                          headers={"Authorization": "Bearer nope"}).status_code == 401
    log = AuditLog(node.duck)
    read, write = log.entries("acme")
    assert read.actor == f"tablet-7#{hash_token(token)[:12]}"
    assert read.action == "GET /api/v1/probe"
    assert read.resource == "200 q=pump"  # the token query parameter is dropped
    assert read.memory_ids == ("M-1", "inc_a", "man_b", "cor_c")
    assert (write.action, write.resource, write.memory_ids) == (
        "POST /api/v1/probe", "201", ("inc_1", "inc_2"))
    rows = node.duck.query("SELECT * FROM audit_log")
    assert token not in repr(rows)
    assert log.verify().ok


def test_unrecordable_read_is_not_served(node: EdgeNode) -> None:
    token = create_token(node.duck, "acme", Role.TECHNICIAN, "t")
    app = _app(node)
    node.duck.query("DROP TABLE audit_log")  # the log is gone: reads must stop
    with TestClient(app) as client:
        r = client.get("/api/v1/probe", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "audit_unavailable"
    assert "inc_a" not in r.text


def test_real_app_has_the_middleware_and_a_body_limit(node: EdgeNode) -> None:
    token = create_token(node.duck, "acme", Role.ADMIN, "admin")
    app = create_app(node)
    assert any(m.__class__ is AuditMiddleware for m in app.middleware)
    limit = node.settings.api.max_upload_mb * 1024 * 1024
    with TestClient(app) as client:
        spec = client.get("/api/v1/schema/openapi.json").json()
        posts = [p for p, ops in spec["paths"].items() if "post" in ops]
        if not posts:
            pytest.skip("the app has no POST route yet")
        h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        r = client.post(posts[0], content=b"[" + b" " * (limit + 10) + b"]", headers=h)
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "too_large"


def test_real_reads_record_the_memory_ids_they_returned(secure_node: Any) -> None:
    """Briefing, search and context of the real app: each read is on record with the ids
    of the memories it answered with."""
    from tests.security.conftest import ACME_MACHINE

    sn = secure_node
    h = sn.headers("acme_technician")
    spec_paths = sn.client.get("/api/v1/schema/openapi.json").json()["paths"]
    reads = [(p, params) for p, params in [
        (f"/api/v1/machines/{ACME_MACHINE}/briefing", {}),
        ("/api/v1/search", {"q": "quasar valve", "machine_id": ACME_MACHINE}),
        ("/api/v1/context", {"q": "quasar valve", "machine_id": ACME_MACHINE}),
    ] if p in spec_paths or (p.endswith("/briefing") and
        "/api/v1/machines/{code}/briefing" in spec_paths)]
    if not reads:
        pytest.skip("no briefing/search/context routes yet")
    log = AuditLog(sn.node.duck)
    for path, params in reads:
        before = log.entries("acme", limit=100000)[-1].seq
        r = sn.client.get(path, params=params, headers=h)
        assert r.status_code == 200, (path, r.text)
        (entry,) = log.entries("acme", after_seq=before)
        assert entry.action == f"GET {path}"
        assert entry.actor.startswith("acme-technician#")
        assert sn.acme_ids["incident"] in entry.memory_ids, (path, entry)
        assert all(i in r.text for i in entry.memory_ids)
    assert log.verify().ok


def test_with_sync_on_every_entry_is_queued_as_a_wire_message(tmp_path: Any) -> None:
    from rae_edge import config
    from rae_sync.messages import AuditEntryMsg

    node = EdgeNode(config.load(None, data_dir=tmp_path / "n", node={"tenant_id": "acme"},
                                sync={"mqtt_url": "mqtts://127.0.0.1:8883"}))
    try:
        token = create_token(node.duck, "acme", Role.TECHNICIAN, "t")
        with TestClient(_app(node)) as client:
            client.get("/api/v1/probe", headers={"Authorization": f"Bearer {token}"})
        queued = [p for _, _, kind, p in node.duck.outbox_peek(100) if kind == "audit_entry"]
        (entry,) = AuditLog(node.duck).entries("acme")
    finally:
        node.close()
    assert [AuditEntryMsg(entry=q).entry for q in queued] == [entry]
