"""The PostgreSQL fixture itself: a fresh database per test, and a server that restarts."""

from __future__ import annotations

import sqlalchemy as sa

from tests.fixtures.postgres import PgServer


def test_fresh_database_survives_restart(pg_server: PgServer, pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x int)"))
        conn.execute(sa.text("INSERT INTO t VALUES (41), (1)"))
    engine.dispose()
    pg_server.restart()
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT sum(x) FROM t")).scalar_one() == 42
        assert "PostgreSQL" in conn.execute(sa.text("SELECT version()")).scalar_one()
    engine.dispose()
