"""Tenant isolation in PostgreSQL: Row Level Security on every central table.

Migration ``0002`` enables and *forces* RLS on every table with a ``tenant_id`` column,
with one policy: a row is visible and writable only when its ``tenant_id`` equals the
session setting :data:`TENANT_SETTING`. With the setting absent nothing is visible and
nothing can be written. The application connects as a login role that is a member of
:data:`APP_ROLE` (``NOSUPERUSER NOBYPASSRLS``, not the tables' owner), so it cannot switch
the policies off, and sets the tenant per transaction with :func:`set_tenant`.

Deployment: ``CREATE ROLE rae_central_app LOGIN PASSWORD '...' IN ROLE rae_app;`` and the
workers' ``--database-url`` uses that user; migrations run as the owner.
"""

from __future__ import annotations

from typing import Any

APP_ROLE = "rae_app"
TENANT_SETTING = "rae.tenant_id"
POLICY = "tenant_isolation"


def set_tenant(conn: Any, tenant_id: str) -> None:
    """Scopes the current transaction to ``tenant_id`` (``set_config(..., true)`` is
    transaction-local, so a pooled connection never carries it into the next use).
    ``conn`` is a SQLAlchemy ``Connection`` or ``Session``."""
    from sqlalchemy import text

    conn.execute(text("SELECT set_config(:k, :v, true)"), {"k": TENANT_SETTING, "v": tenant_id})
