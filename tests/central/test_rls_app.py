"""Row-level security as central really runs: the ingest worker (in process and as the
processes of ``rae-central serve``) connects as the application's login role, not as a
superuser; ingest, fan-out and dead letters still work through it; without a tenant it
sees nothing and with one it never sees another tenant's rows; it refuses to start as a
privileged role."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from rae_central.config import CentralSettings
from rae_central.rls import APP_ROLE, PrivilegedRoleError, set_tenant
from rae_central.worker import IngestWorker
from rae_sync.messages import CorrectionMsg
from tests.central.conftest import Central
from tests.central.edge_sim import wait_for
from tests.central.serve_proc import ServeProc


def _role(engine: sa.Engine) -> tuple[str, bool, bool, bool]:
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT current_user, r.rolsuper, r.rolbypassrls, pg_has_role(current_user, "
            ":app, 'MEMBER') FROM pg_roles r WHERE r.rolname = current_user"),
            {"app": APP_ROLE}).one()
    return (str(row[0]), bool(row[1]), bool(row[2]), bool(row[3]))


def test_the_worker_runs_as_the_app_role_and_rls_binds_it(central: Central,
                                                           worker: IngestWorker) -> None:
    assert _role(worker.engine) == ("rae_central_app", False, False, True)
    assert worker.db_role == "rae_central_app"
    a, b, x = central.edge("a"), central.edge("b"), central.edge("x")
    try:
        a.send([a.correction(f"acme secret {i}") for i in range(5)])
        x.send([x.correction(f"globex secret {i}") for i in range(3)])
        a.deliver_all(timeout=30)
        x.deliver_all(timeout=30)
        wait_for(lambda: len(b.received(CorrectionMsg)) == 5, what="fan-out to node-b")
        assert x.received(CorrectionMsg) == []  # no fan-out across tenants
    finally:
        for e in (a, b, x):
            e.close()
    # the owner sees both tenants' rows ...
    assert central.store.count("corrections", "acme") == 5
    assert central.store.count("corrections", "globex") == 3
    with worker.engine.connect() as conn:
        # ... the worker's connection without the tenant setting sees nothing at all
        for table in ("corrections", "messages", "nodes", "dead_letters", "fanout"):
            assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
        conn.rollback()
        # ... and scoped to acme never sees globex, however the query is written
        set_tenant(conn, "acme")
        assert conn.execute(sa.text("SELECT count(*) FROM corrections")).scalar_one() == 5
        assert conn.execute(sa.text(
            "SELECT count(*) FROM corrections WHERE tenant_id = 'globex' OR true")
        ).scalar_one() == 5
        assert conn.execute(sa.text(
            "SELECT count(*) FROM corrections WHERE text LIKE 'globex%'")).scalar_one() == 0
        # the one cross-tenant lookup returns a key and a flag, nothing else
        row = conn.execute(sa.text(
            "SELECT * FROM rae_node_key('globex', 'plant-9', 'node-x')")).one()
        assert row._fields == ("public_key", "revoked") and row[1] is False
        conn.rollback()
        # an empty tenant is no tenant
        conn.execute(sa.text("SELECT set_config('rae.tenant_id', '', true)"))
        assert conn.execute(sa.text("SELECT count(*) FROM corrections")).scalar_one() == 0


def test_dead_letters_are_recorded_through_the_app_role(central: Central,
                                                        worker: IngestWorker) -> None:
    a = central.edge("a")
    try:
        assert a.transport is not None
        a.transport.publish("rae/v1/acme/plant-1/node-a/up/correction", b"{not json")
        # a topic of a tenant nobody enrolled, and one no tenant can be read from
        a.transport.publish("rae/v1/nobody/plant/ghost/up/correction", b"{}")
        wait_for(lambda: central.store.count("dead_letters") >= 2, what="2 dead letters")
    finally:
        a.close()
    app = central.app_store()
    try:
        assert app.count("dead_letters") == 0  # no tenant: nothing
        mine = app.dead_letters(tenant="acme")
        assert [d["node_id"] for d in mine] == ["node-a"]
        assert app.dead_letters(tenant="globex") == []
        # a dead letter whose tenant cannot be read: written, readable only by the
        # operator's fleet view (without its payload)
        app.dead_letter([("not/a/rae/topic", b"payload", "malformed: topic", None)])
        assert central.store.count("dead_letters") == 3
        fleet = {d["topic"]: d for d in app.fleet_dead_letters()}
        assert fleet["not/a/rae/topic"]["tenant_id"] == ""
        assert "payload_head" not in fleet["not/a/rae/topic"]
        with app.engine.connect() as conn, \
                pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
            set_tenant(conn, "acme")
            conn.execute(sa.text(
                "INSERT INTO dead_letters (tenant_id, site_id, node_id, topic, payload, "
                "reason, at) VALUES ('globex', '', '', 't', '', 'planted', now())"))
    finally:
        app.engine.dispose()


def test_the_worker_refuses_a_privileged_role(central: Central) -> None:
    owner = CentralSettings(**{**central.settings.model_dump(),
                               "app_database_url": central.settings.database_url})
    with pytest.raises(PrivilegedRoleError, match="superuser"):
        IngestWorker(owner, index=9)


def test_serve_processes_connect_as_the_app_role(central: Central) -> None:
    serve = ServeProc(central, workers=2).start()
    a = central.edge("a")
    try:
        a.send([a.correction(f"through serve {i}") for i in range(10)])
        a.deliver_all(timeout=60)
        with central.store.engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT a.application_name, a.usename, r.rolsuper, r.rolbypassrls "
                "FROM pg_stat_activity a JOIN pg_roles r ON r.rolname = a.usename "
                "WHERE a.datname = current_database() "
                "AND a.application_name LIKE 'rae-central-%'")).all()
        names = {r[0] for r in rows}
        assert {"rae-central-worker-0", "rae-central-worker-1", "rae-central-serve"} <= names
        assert {(r[1], r[2], r[3]) for r in rows} == {("rae_central_app", False, False)}
        assert central.store.count("corrections", "acme") == 10
    finally:
        a.close()
        serve.stop()
