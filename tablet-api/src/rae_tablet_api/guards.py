"""Role guards for route handlers: ``@get(..., guards=guards.TECHNICIAN)``.

Every handler under ``/api/v1`` (but ``/health``) names the least role it needs; the guard
runs before the body is read or any service is touched, and answers 401 (missing,
unknown or revoked token), 403 (role too weak) or 429 (too many failed attempts) through
:func:`rae_tablet_api.auth.admit`, the same decision the push WebSocket uses. The
handler then takes the caller as its ``principal`` parameter and its services by name
(:mod:`rae_tablet_api.services`).
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from rae_sync.domain import Role
from rae_tablet_api.auth import Refusal, admit
from rae_tablet_api.services import node_of


def role_guard(role: Role) -> Guard:
    """A guard that admits callers whose role is at least ``role``."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        got = await admit(connection.scope, node_of(connection.app.state).duck, role)
        if isinstance(got, Refusal):
            raise got.as_http()

    guard.__name__ = guard.__qualname__ = f"needs_{role.value}"
    return guard


TECHNICIAN: list[Guard] = [role_guard(Role.TECHNICIAN)]  # any valid token
SUPERVISOR: list[Guard] = [role_guard(Role.SUPERVISOR)]
ADMIN: list[Guard] = [role_guard(Role.ADMIN)]
