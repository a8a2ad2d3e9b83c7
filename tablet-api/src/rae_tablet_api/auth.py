"""Authentication for every transport of the tablet API: one bearer parser, one lookup.

:func:`admit` is the single decision: who is calling (a bearer token, or the node's local
admin channel) and whether its role suffices; it answers a :class:`Principal` or a
:class:`Refusal` (401 missing/unknown token, 403 role too weak, 429 too many failures).
HTTP handlers meet it through the guards of :mod:`rae_tablet_api.guards` and the
``principal`` dependency (:func:`provide_principal`); the push WebSocket calls it itself
to answer with close codes (4401/4403/4429). The audit middleware resolves the caller
once per request (:func:`resolve_principal`) and leaves it in the ASGI scope, so a token
is looked up once whatever reads it after. Failed attempts are rate-limited per client
address, and the token itself never reaches a log line (only its hash prefix does).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs

import anyio.to_thread
from litestar import Request
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import Scope

from rae_edge.store.duck import DuckStore
from rae_edge.tokens import Principal, authenticate
from rae_sync.domain import Role

MAX_FAILURES = 20  # per client address per window
WINDOW_S = 60.0
# ASGI scope keys, set by this process only (a client cannot put anything in the scope):
PRINCIPAL_KEY = "rae.principal"  # the caller once looked up: a Principal, or None
LOCAL_ADMIN_KEY = "rae.local_admin"  # the request came over the local admin channel


class _FailureLimiter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fails: dict[str, deque[float]] = {}

    def blocked(self, client: str) -> float:
        """Seconds until ``client`` may try again (0 when not blocked)."""
        now = time.monotonic()
        with self._lock:
            q = self._fails.get(client)
            if not q:
                return 0.0
            while q and now - q[0] > WINDOW_S:
                q.popleft()
            return WINDOW_S - (now - q[0]) if len(q) >= MAX_FAILURES else 0.0

    def fail(self, client: str) -> None:
        with self._lock:
            self._fails.setdefault(client, deque()).append(time.monotonic())


limiter = _FailureLimiter()


@dataclass(frozen=True)
class Refusal:
    """Why a caller is not admitted: an HTTP status (401, 403, 429) and its message."""

    status: int
    message: str
    retry_after_s: int | None = None

    def as_http(self) -> HTTPException:
        headers = ({"Retry-After": str(self.retry_after_s)}
                   if self.retry_after_s is not None else None)
        return HTTPException(status_code=self.status, detail=self.message, headers=headers)


def bearer_token(scope: Scope) -> str | None:
    """The one bearer parser: ``Authorization: Bearer <token>``; on a WebSocket also
    ``?token=`` (browsers cannot set headers there), never on plain HTTP."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1")
            if text.lower().startswith("bearer "):
                return text[7:].strip() or None
    if scope["type"] == ScopeType.WEBSOCKET:
        found = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        return found[0] if found else None
    return None


# Not a secret: no token hashes to this (a token's hash is 64 hex digits).
LOCAL_TOKEN_HASH = "local"  # noqa: S105


def local_admin(tenant_id: str) -> Principal:
    """The caller on the local admin channel: the data folder's owner, admin of the node's
    own tenant (only that user can open the channel's socket)."""
    return Principal(tenant_id, Role.ADMIN, "local-admin", LOCAL_TOKEN_HASH)


def is_local_admin(principal: Principal) -> bool:
    """Whether the caller came over the local admin channel (the data folder's owner, who
    could open the folder itself: it may manage every tenant's tokens, as the direct
    ``rae-edge token`` does)."""
    return principal.token_hash == LOCAL_TOKEN_HASH


async def resolve_principal(scope: Scope, duck: DuckStore) -> Principal | None:
    """Who is calling, looked up once per request and kept in the scope: None for a
    missing, unknown or revoked token."""
    raw = cast("dict[str, Any]", scope)
    if PRINCIPAL_KEY in raw:
        return cast("Principal | None", raw[PRINCIPAL_KEY])
    token = bearer_token(scope)
    principal = await anyio.to_thread.run_sync(authenticate, duck, token) if token else None
    raw[PRINCIPAL_KEY] = principal
    return principal


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "?"


async def admit(scope: Scope, duck: DuckStore, role: Role) -> Principal | Refusal:
    """The caller if it may act with ``role``, else why not. Unknown tokens count towards
    the caller's failure limit; once over it, every try is refused for a while."""
    if cast("dict[str, Any]", scope).get(LOCAL_ADMIN_KEY):
        principal = cast("Principal | None", cast("dict[str, Any]", scope)[PRINCIPAL_KEY])
    else:
        client = _client(scope)
        wait = limiter.blocked(client)
        if wait > 0:
            return Refusal(429, "too many failed authentication attempts", int(wait) + 1)
        if bearer_token(scope) is None:
            return Refusal(401, "missing bearer token (Authorization: Bearer <token>)")
        principal = await resolve_principal(scope, duck)
        if principal is None:
            limiter.fail(client)
            return Refusal(401, "unknown or revoked token")
    if principal is None:
        return Refusal(401, "unknown caller")
    if not principal.can(role):
        return Refusal(403, f"this needs the {role.value} role; the token has "
                            f"{principal.role.value}")
    return principal


async def provide_principal(request: Request[Any, Any, Any], state: State) -> Principal:
    """The ``principal`` dependency: any authenticated caller (the route's guard has
    already checked its role)."""
    got = await admit(request.scope, state.node.duck, Role.TECHNICIAN)
    if isinstance(got, Refusal):
        raise got.as_http()
    return got
