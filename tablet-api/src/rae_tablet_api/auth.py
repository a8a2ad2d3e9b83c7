"""Bearer-token authentication and role checks for the tablet API.

``principal`` is a Litestar dependency: any handler that takes a ``principal`` parameter
requires a valid token. Failed attempts are rate-limited per client address, and the
token itself never reaches a log line (only its hash prefix does).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, cast

import anyio.to_thread
from litestar import Request
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException

from rae_edge.node import EdgeNode
from rae_edge.tokens import Principal, authenticate
from rae_sync.domain import Role
from rae_tablet_api.audit_hook import PRINCIPAL_KEY

MAX_FAILURES = 20  # per client address per window
WINDOW_S = 60.0


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


def token_from(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    # WebSockets from browsers cannot set headers: accept ?token= there only.
    if str(request.scope["type"]) == "websocket":
        return request.query_params.get("token")
    return None


async def provide_principal(request: Request[Any, Any, Any], state: State) -> Principal:
    client = request.client.host if request.client else "?"
    wait = limiter.blocked(client)
    if wait > 0:
        raise HTTPException(status_code=429, detail="too many failed authentication attempts",
                            headers={"Retry-After": str(int(wait) + 1)})
    token = token_from(request)
    if not token:
        raise NotAuthorizedException("missing bearer token (Authorization: Bearer <token>)")
    known = cast("dict[str, Any]", request.scope).get(PRINCIPAL_KEY)
    if known is not None and known[0] == token:  # the audit middleware looked it up already
        return cast("Principal", known[1])
    node: EdgeNode = state.node
    principal = await anyio.to_thread.run_sync(authenticate, node.duck, token)
    if principal is None:
        limiter.fail(client)
        raise NotAuthorizedException("unknown or revoked token")
    return principal


def require(principal: Principal, role: Role) -> None:
    """Raises 403 unless the principal's role is at least ``role``."""
    if not principal.can(role):
        raise PermissionDeniedException(f"this needs the {role.value} role; "
                                        f"the token has {principal.role.value}")
