"""Alembic, driven from code: ``upgrade(url)`` brings a database to the newest schema;
``check_current(engine)`` refuses to run on a database this code does not know (newer
than us, or never migrated)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine

from rae_central.rls import DEFAULT_APP_LOGIN, ensure_app_login

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class SchemaMismatchError(RuntimeError):
    """The database's schema revision is not the one this code was built for."""


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head() -> str:
    head_rev = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    assert head_rev is not None
    return head_rev


def upgrade(url: str, revision: str = "head", *, app_role: str | None = DEFAULT_APP_LOGIN,
            app_password: str | None = None) -> str:
    """Migrates the database at ``url`` (the owner's); returns the revision it is at
    afterwards. Then makes sure the application's login role ``app_role`` exists (a member
    of ``rae_app``; its password set when given; ``None``: leave roles alone), see
    :func:`rae_central.rls.ensure_app_login`."""
    cfg = alembic_config(url)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            # One migrator at a time, when several workers start together.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        rev = current(engine) or ""
    finally:
        engine.dispose()
    if app_role is not None and rev == head():
        ensure_app_login(url, app_role, app_password)
    return rev


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_current(engine: Engine) -> None:
    """Raises :class:`SchemaMismatchError` unless the database is at our head revision."""
    rev = current(engine)
    want = head()
    if rev == want:
        return
    if rev is None:
        raise SchemaMismatchError("the database has no schema yet: run `rae-central migrate "
                                  "--database-url URL` first")
    known = {s.revision for s in ScriptDirectory.from_config(alembic_config("")).walk_revisions()}
    if rev not in known:
        raise SchemaMismatchError(f"the database is at schema revision {rev!r}, newer than this "
                                  f"code knows (head {want!r}): upgrade rae-central")
    raise SchemaMismatchError(f"the database is at schema revision {rev!r}, older than "
                              f"{want!r}: run `rae-central migrate`")
