"""Proactive push: ``WS /api/v1/push?machine_id=A&machine_id=B&cursor=N`` and its HTTP form
``GET /api/v1/push/messages`` (in the OpenAPI document; WebSockets are not).

Frames are JSON: first ``{"type": "hello", "cursor", "machine_ids", "gap"}``, then each
message ``{"cursor", "type", "machine_id", "at", "data"}`` (types: briefing, incident,
correction, voice_note). A tablet keeps the last cursor it saw and reconnects with
``?cursor=``: it gets what it missed, each message once. Browsers pass the token as
``?token=`` (they cannot set headers on a WebSocket). Without ``machine_id`` a socket
watches every machine of the tenant. Close codes: 4401 missing, unknown or revoked token;
4403 role too weak; 4404 unknown machine; 4429 too many failed attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import anyio
from litestar import Request, WebSocket, get, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect

from rae_edge.errors import NotFoundError
from rae_edge.node import EdgeNode
from rae_edge.tokens import Principal, authenticate
from rae_sync.domain import Role
from rae_tablet_api.auth import limiter, require, token_from
from rae_tablet_api.schemas import PushMessageOut, PushPage

MAX_MACHINES = 200
PING_S = 25.0


def _machines(node: EdgeNode, tenant: str, codes: list[str] | None) -> list[str]:
    codes = [c for c in (codes or []) if c.strip()]
    if len(codes) > MAX_MACHINES:
        raise NotFoundError(f"watch at most {MAX_MACHINES} machines per socket")
    return sorted({node.memory.machine(tenant, c).id for c in codes})


async def _authenticate(socket: WebSocket[Any, Any, Any], node: EdgeNode,
                        ) -> tuple[Principal | None, int, str]:
    """The socket's principal, or None with a close code (4401, 4403, 4429) and reason.

    Done here rather than by the ``principal`` dependency so a browser sees a close code
    it can act on (4401: ask for a new token) instead of a generic error."""
    client = socket.client.host if socket.client else "?"
    if limiter.blocked(client) > 0:
        return None, 4429, "too many failed authentication attempts"
    token = token_from(cast("Request[Any, Any, Any]", socket))
    if not token:
        return None, 4401, "missing token (?token= or Authorization: Bearer)"
    principal = await anyio.to_thread.run_sync(authenticate, node.duck, token)
    if principal is None:
        limiter.fail(client)
        return None, 4401, "unknown or revoked token"
    if not principal.can(Role.TECHNICIAN):
        return None, 4403, "this needs the technician role"
    return principal, 1000, ""


@websocket("/api/v1/push")
async def push_socket(socket: WebSocket[Any, Any, Any], state: State,
                      machine_id: list[str] | None = None, cursor: int | None = None) -> None:
    node: EdgeNode = state.node
    principal, code, reason = await _authenticate(socket, node)
    if principal is None:
        await socket.accept()
        await socket.close(code=code, reason=reason)
        return
    tenant = principal.tenant_id
    try:
        machines = await anyio.to_thread.run_sync(_machines, node, tenant, machine_id)
    except NotFoundError as exc:
        await socket.accept()
        await socket.close(code=4404, reason=str(exc)[:120])
        return
    sub = await node.push.subscribe(tenant, machines, cursor)
    await socket.accept()
    stop = asyncio.Event()

    async def watch_close() -> None:
        # The only inbound traffic is the close (or pings from the page): drain it.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                await socket.receive_data("text")
        stop.set()

    async def forward() -> None:
        await socket.send_json({"type": "hello", "cursor": sub.last, "machine_ids": machines,
                                "gap": sub.gap})
        async for msg in sub.messages():
            await socket.send_json(msg.to_json())

    async def keepalive() -> None:
        while True:
            await asyncio.sleep(PING_S)
            await socket.send_json({"type": "ping", "cursor": None})

    tasks = [asyncio.create_task(t()) for t in (watch_close, forward, keepalive)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sub.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not stop.is_set():
            with contextlib.suppress(Exception):
                await socket.close()


@get("/api/v1/push/messages", sync_to_thread=True, tags=["push"],
     summary="Push messages after a cursor (HTTP form of WS /api/v1/push)")
def push_messages(principal: Principal, state: State, machine_id: list[str] | None = None,
                  cursor: int = 0, limit: int = 100) -> PushPage:
    """What a tablet watching ``machine_id`` (several allowed; none: all machines) would
    have been pushed after ``cursor``, oldest first, at most ``limit``."""
    require(principal, Role.TECHNICIAN)
    node: EdgeNode = state.node
    machines = _machines(node, principal.tenant_id, machine_id)
    msgs = node.push.since(principal.tenant_id, machines, max(0, cursor),
                           max(1, min(limit, 500)))
    return PushPage(cursor=msgs[-1].cursor if msgs else max(0, cursor),
                    messages=[PushMessageOut(**m.to_json()) for m in msgs])


ROUTES = [push_socket, push_messages]
