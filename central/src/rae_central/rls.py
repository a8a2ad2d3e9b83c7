"""Tenant isolation in PostgreSQL: Row Level Security on every central table, and the
role the running application connects as.

Policies (migrations ``0002`` and ``0003``): RLS is enabled and *forced* on every table
with a ``tenant_id`` column, with one policy: a row is visible and writable only when its
``tenant_id`` equals the session setting :data:`TENANT_SETTING` (an empty or absent
setting matches nothing). With the setting absent nothing is visible and nothing can be
written. Every transaction of the application calls :func:`set_tenant` first (a batch of
messages from several tenants is committed as one transaction per tenant).

Roles:

- the **owner** (``database_url``): runs ``rae-central migrate`` (tables, policies, the
  functions below) and the operator commands ``enroll`` / ``revoke``;
- :data:`APP_ROLE` ``rae_app``: ``NOLOGIN NOSUPERUSER NOBYPASSRLS``, owns nothing, holds
  the table privileges;
- the **application login** (``app_role``, default ``rae_central_app``, a member of
  ``rae_app``): what the ingest workers, the fan-out, the vector indexer and the admin
  console connect as (``app_database_url``, or ``database_url`` with this user and
  ``app_password``). ``rae-central migrate`` creates it, or sets its password from the
  settings (:func:`ensure_app_login`); :func:`check_app_role` makes ``serve`` and
  ``worker`` refuse to start as a superuser, a ``BYPASSRLS`` role, a table owner or a
  role outside ``rae_app``.

Cross-tenant needs, each through one narrow ``SECURITY DEFINER`` function owned by the
owner, executable by ``rae_app`` only, returning only what the need requires:

- ``rae_node_key(tenant, site, node)`` → ``(public_key, revoked)``: the one lookup a
  worker makes before a message's tenant can be trusted (the signature proves it);
- ``rae_tenants()`` → the enrolled tenants' ids, so that chores (replay requests,
  stale fan-out, vector indexing) run tenant by tenant under the policy;
- ``rae_fleet_nodes()``, ``rae_fleet_gaps()``, ``rae_fleet_dead_letters(n)``: the central
  operator's health view of every node: enrollment, last seen, seq watermark, gaps,
  outbox depth/lag, dead-letter counts and reasons — never a memory's content nor a
  dead letter's payload;
- dead letters whose tenant cannot be determined (an unparsable topic) are written with
  ``tenant_id = ''`` through an INSERT-only policy: nobody reads them through the
  application except via the operator's fleet view.

Why this split for the console: a regulated plant accepts a vendor or central IT team
that sees whether its nodes are healthy, but not its field knowledge. So the operator
token (``admin.token``) sees fleet health of every tenant (through the functions above)
and may revoke any node (a compromised key is an emergency); the corrections and dead
letter payloads of a tenant are visible only with that tenant's own console token
(``admin.tenant_tokens``), whose every query runs under :func:`set_tenant`, so the
policy — not the handler — keeps other tenants out. A bug in a handler cannot widen what
the database returns, and no application connection can switch the policies off.

Deployment (a DBA doing it by hand instead of ``migrate``): ``CREATE ROLE
rae_central_app LOGIN PASSWORD '...' NOSUPERUSER NOBYPASSRLS IN ROLE rae_app;`` and
``scram-sha-256`` for it in ``pg_hba.conf``.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine, create_engine, text

APP_ROLE = "rae_app"
TENANT_SETTING = "rae.tenant_id"
POLICY = "tenant_isolation"
DEFAULT_APP_LOGIN = "rae_central_app"

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PrivilegedRoleError(RuntimeError):
    """The application was about to connect as a role that could bypass the policies."""


def set_tenant(conn: Any, tenant_id: str) -> None:
    """Scopes the current transaction to ``tenant_id`` (``set_config(..., true)`` is
    transaction-local, so a pooled connection never carries it into the next use).
    ``conn`` is a SQLAlchemy ``Connection`` or ``Session``."""
    if not tenant_id:
        raise ValueError("a tenant id is required to scope a transaction")
    conn.execute(text("SELECT set_config(:k, :v, true)"), {"k": TENANT_SETTING, "v": tenant_id})


def ensure_app_login(owner_url: str, role: str = DEFAULT_APP_LOGIN,
                     password: str | None = None) -> None:
    """Creates the application's login role (a member of :data:`APP_ROLE`, no superuser,
    no ``BYPASSRLS``) if missing, sets its password when one is given, and lets it
    connect to this database. Run as the owner (``rae-central migrate``).

    Refuses a role name that is the owner itself or a privileged role: altering those
    would either lock the owner out or hand the application the keys."""
    if not _ROLE_NAME.match(role):
        raise ValueError(f"application role {role!r}: use lower-case letters, digits and _")
    engine = create_engine(owner_url)
    try:
        with engine.begin() as conn:
            me = conn.execute(text("SELECT current_user")).scalar_one()
            if role == me:
                raise PrivilegedRoleError(
                    f"the application role {role!r} is the owner that runs the migrations: "
                    "give the application its own login (app_role / app_database_url)")
            row = conn.execute(text("SELECT rolsuper, rolbypassrls FROM pg_roles "
                                    "WHERE rolname = :r"), {"r": role}).first()
            if row is not None and (row[0] or row[1]):
                raise PrivilegedRoleError(
                    f"role {role!r} is a superuser or BYPASSRLS: it cannot be the "
                    "application's login; choose another app_role")
            if row is None:
                # Two databases of one cluster migrating at once may race on the role.
                conn.execute(text(
                    f"DO $$ BEGIN CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS "
                    f"NOCREATEDB NOCREATEROLE INHERIT; "
                    f"EXCEPTION WHEN duplicate_object THEN NULL; END $$"))
            conn.execute(text(f"GRANT {APP_ROLE} TO {role}"))
            if password is not None:
                # The password is a literal here (ALTER ROLE takes no parameters).
                quoted = conn.execute(text("SELECT quote_literal(:p)"),
                                      {"p": password}).scalar_one()
                conn.execute(text(f"ALTER ROLE {role} LOGIN PASSWORD {quoted}"))
            db = conn.execute(text("SELECT quote_ident(current_database())")).scalar_one()
            conn.execute(text(f"GRANT CONNECT ON DATABASE {db} TO {role}"))
    finally:
        engine.dispose()


def check_app_role(engine: Engine) -> str:
    """Returns the connected role's name, or raises :class:`PrivilegedRoleError` when it
    could bypass row-level security (superuser, ``BYPASSRLS``, owner of a table) or is
    not a member of :data:`APP_ROLE`."""
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT r.rolname, r.rolsuper, r.rolbypassrls, "
            "  pg_has_role(current_user, :app, 'MEMBER'), "
            "  EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "          WHERE n.nspname = current_schema() AND c.relkind = 'r' "
            "          AND pg_has_role(current_user, c.relowner, 'MEMBER')) "
            "FROM pg_roles r WHERE r.rolname = current_user"), {"app": APP_ROLE}).one()
    name, superuser, bypass, member, owns = row
    why = ("a superuser" if superuser else "BYPASSRLS" if bypass else
           "the owner of central's tables" if owns else
           f"not a member of {APP_ROLE}" if not member else "")
    if why:
        raise PrivilegedRoleError(
            f"refusing to run as database role {name!r}: it is {why}, so row-level "
            f"security would not hold. Run `rae-central migrate` (it creates the login "
            f"{DEFAULT_APP_LOGIN!r}) and connect the application with it (app_database_url, "
            f"or app_role/app_password)")
    return str(name)
