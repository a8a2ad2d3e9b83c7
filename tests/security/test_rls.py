"""Row Level Security at central, on a real PostgreSQL: every table is tenant-scoped,
a session without the tenant setting sees nothing, and the application's role cannot
switch the policies off or step outside its tenant."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")

from rae_central.db.migrate import upgrade  # noqa: E402
from rae_central.rls import APP_ROLE, TENANT_SETTING  # noqa: E402


def _dsn(url: str, user: str | None = None) -> str:
    # postgresql+psycopg://postgres@127.0.0.1:PORT/DB -> libpq keywords
    rest = url.split("://", 1)[1]
    userpart, hostpart = rest.split("@", 1)
    hostport, db = hostpart.split("/", 1)
    host, port = hostport.split(":")
    return f"host={host} port={port} dbname={db} user={user or userpart}"


def _insert_incident(cur: Any, tenant: str, ident: str) -> None:
    now = datetime.now(UTC)
    cur.execute(
        "INSERT INTO incidents (tenant_id, id, machine_id, occurred_at, symptom, source, "
        "content_hash, origin_site, origin_node, message_id, received_at) "
        "VALUES (%s, %s, 'M1', %s, 'secret symptom', 'api', 'h', 's', 'n', %s, %s)",
        [tenant, ident, now, uuid.uuid4().hex, now])


@pytest.fixture
def rls_db(pg_url: str) -> dict[str, str]:
    upgrade(pg_url)
    login = f"rae_web_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_dsn(pg_url), autocommit=True) as owner:
        owner.execute(f"CREATE ROLE {login} LOGIN IN ROLE {APP_ROLE}")
        with owner.cursor() as cur:
            for tenant in ("acme", "globex"):
                for i in range(3):
                    _insert_incident(cur, tenant, f"{tenant}-{i}")
    return {"owner": _dsn(pg_url), "app": _dsn(pg_url, login)}


def test_every_table_is_tenant_scoped(rls_db: dict[str, str]) -> None:
    with psycopg.connect(rls_db["owner"]) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
            "  (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid), "
            "  EXISTS (SELECT 1 FROM information_schema.columns k WHERE k.table_name = c.relname"
            "          AND k.table_schema = 'public' AND k.column_name = 'tenant_id') "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'alembic_version'"
        ).fetchall()
    assert len(rows) >= 5
    unscoped = [r[0] for r in rows if not (r[1] and r[2] and r[3] >= 1 and r[4])]
    assert unscoped == [], f"tables without tenant_id + forced RLS policy: {unscoped}"
    print(f"\nRLS: {len(rows)} tables, all with a forced tenant policy")


def test_without_the_tenant_setting_the_app_sees_nothing(rls_db: dict[str, str]) -> None:
    with psycopg.connect(rls_db["app"]) as conn:
        assert conn.execute("SELECT count(*) FROM incidents").fetchone() == (0,)
        assert conn.execute("SELECT current_setting(%s, true)", [TENANT_SETTING]).fetchone() \
            in [(None,), ("",)]
        conn.rollback()
        conn.execute("SELECT set_config(%s, 'acme', true)", [TENANT_SETTING])
        seen = conn.execute("SELECT tenant_id, count(*) FROM incidents GROUP BY 1").fetchall()
        assert seen == [("acme", 3)]
        # An attempt to widen the filter in SQL still stays inside the policy.
        widened = conn.execute(
            "SELECT count(*) FROM incidents WHERE tenant_id = 'globex' OR '1' = '1'").fetchone()
        assert widened == (3,)
        conn.commit()
        # transaction-local: the next transaction starts without a tenant again
        assert conn.execute("SELECT count(*) FROM incidents").fetchone() == (0,)


def test_the_app_role_cannot_write_across_tenants(rls_db: dict[str, str]) -> None:
    with psycopg.connect(rls_db["app"]) as conn:
        conn.execute("SELECT set_config(%s, 'acme', true)", [TENANT_SETTING])
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            _insert_incident(conn.cursor(), "globex", "planted")
        conn.rollback()
        conn.execute("SELECT set_config(%s, 'acme', true)", [TENANT_SETTING])
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("UPDATE incidents SET tenant_id = 'globex' WHERE id = 'acme-0'")
        conn.rollback()
        conn.execute("SELECT set_config(%s, 'acme', true)", [TENANT_SETTING])
        assert conn.execute("DELETE FROM incidents WHERE tenant_id = 'globex'").rowcount == 0
        conn.rollback()
        # Without a tenant nothing can be written at all.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _insert_incident(conn.cursor(), "acme", "no-tenant")
        conn.rollback()
    with psycopg.connect(rls_db["owner"]) as owner:
        assert owner.execute(
            "SELECT tenant_id, count(*) FROM incidents GROUP BY 1 ORDER BY 1").fetchall() == [
            ("acme", 3), ("globex", 3)]


BYPASS_ATTEMPTS = [
    "SET row_security = off; SELECT count(*) FROM incidents",
    "ALTER TABLE incidents DISABLE ROW LEVEL SECURITY",
    "ALTER TABLE incidents NO FORCE ROW LEVEL SECURITY",
    "DROP POLICY tenant_isolation ON incidents",
    "CREATE POLICY open_door ON incidents USING (true)",
    "SET ROLE postgres",
    "ALTER ROLE CURRENT_USER BYPASSRLS",
    f"ALTER ROLE {APP_ROLE} BYPASSRLS",
    "TRUNCATE incidents",
    "CREATE TABLE leak AS SELECT * FROM pg_catalog.pg_authid",
]


@pytest.mark.parametrize("sql", BYPASS_ATTEMPTS)
def test_the_app_role_cannot_bypass_rls(rls_db: dict[str, str], sql: str) -> None:
    with psycopg.connect(rls_db["app"]) as conn:
        with pytest.raises(psycopg.Error):
            for stmt in sql.split("; "):
                conn.execute(stmt)
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM incidents").fetchone() == (0,)
        role = conn.execute("SELECT rolsuper, rolbypassrls FROM pg_roles "
                            "WHERE rolname = current_user").fetchone()
        assert role == (False, False)


def test_cross_tenant_needs_are_narrow_functions(rls_db: dict[str, str]) -> None:
    """The worker's key lookup and the operator's fleet view cross tenants only through
    SECURITY DEFINER functions that return no memory content; a role outside rae_app
    cannot call them; an empty tenant is no tenant; dead letters of an unknown tenant can
    be written by the app but not read back."""
    with psycopg.connect(rls_db["owner"], autocommit=True) as owner:
        owner.execute("INSERT INTO nodes (tenant_id, site_id, node_id, public_key, "
                      "enrolled_at) VALUES ('globex', 's', 'n', 'PEM', now())")
        owner.execute("CREATE ROLE rae_outsider_t LOGIN")
    try:
        with psycopg.connect(rls_db["app"]) as conn:
            assert conn.execute("SELECT * FROM rae_node_key('globex', 's', 'n')").fetchall() \
                == [("PEM", False)]
            assert conn.execute("SELECT * FROM rae_node_key('acme', 's', 'n')").fetchall() == []
            assert conn.execute("SELECT rae_tenants()").fetchall() == [("globex",)]
            cols = [d.name for d in conn.execute("SELECT * FROM rae_fleet_nodes()").description]
            assert "public_key" not in cols and "text" not in cols
            cols = [d.name for d in
                    conn.execute("SELECT * FROM rae_fleet_dead_letters(10)").description]
            assert "payload" not in cols
            conn.execute("SELECT set_config(%s, '', true)", [TENANT_SETTING])
            assert conn.execute("SELECT count(*) FROM nodes").fetchone() == (0,)
            conn.execute("INSERT INTO dead_letters (tenant_id, site_id, node_id, topic, "
                         "payload, reason, at) VALUES ('', '', '', 'x', 'p', 'r', now())")
            assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
            conn.commit()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("INSERT INTO dead_letters (tenant_id, site_id, node_id, topic, "
                             "payload, reason, at) VALUES ('globex', '', '', 'x', 'p', 'r', "
                             "now())")
        outsider = rls_db["app"].rsplit("user=", 1)[0] + "user=rae_outsider_t"
        with psycopg.connect(outsider) as conn, \
                pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM rae_node_key('globex', 's', 'n')")
    finally:
        with psycopg.connect(rls_db["owner"], autocommit=True) as owner:
            owner.execute("DROP ROLE rae_outsider_t")
    with psycopg.connect(rls_db["owner"]) as owner:
        assert owner.execute("SELECT count(*) FROM dead_letters WHERE tenant_id = ''"
                             ).fetchone() == (1,)


def test_migrate_creates_the_app_login_and_refuses_a_privileged_one(pg_url: str) -> None:
    from rae_central.rls import PrivilegedRoleError, ensure_app_login

    upgrade(pg_url, app_role="rae_login_t", app_password="s3cret-pw")
    with psycopg.connect(_dsn(pg_url), autocommit=True) as owner:
        row = owner.execute("SELECT rolcanlogin, rolsuper, rolbypassrls, rolpassword IS NOT "
                            "NULL, pg_has_role('rae_login_t', %s, 'MEMBER') FROM pg_authid "
                            "WHERE rolname = 'rae_login_t'", [APP_ROLE]).fetchone()
        assert row == (True, False, False, True, True)
        with pytest.raises(PrivilegedRoleError, match="owner"):
            ensure_app_login(pg_url, "postgres")
        owner.execute("CREATE ROLE rae_super_t SUPERUSER")
        try:
            with pytest.raises(PrivilegedRoleError, match="superuser"):
                ensure_app_login(pg_url, "rae_super_t")
        finally:
            owner.execute("DROP ROLE rae_super_t")
