"""Proactive push: ``WS /api/v1/push?machine_id=A&machine_id=B&line=L&cursor=N`` and its
HTTP form ``GET /api/v1/push/messages`` (in the OpenAPI document; WebSockets are not).

``?line=`` (several allowed, combinable with ``machine_id``) watches every machine of the
tenant whose ``line`` it is when the message is sent or replayed, machines added to the line
later included; a line with no machine yet is accepted (it is heard once one joins).

Frames are JSON: first ``{"type": "hello", "cursor", "machine_ids", "lines", "gap"}``, then each
message ``{"cursor", "type", "machine_id", "at", "data"}`` (types: briefing, incident,
correction, voice_note, alarm). A tablet keeps the last cursor it saw and reconnects with
``?cursor=``: it gets what it missed, each message once. Browsers pass the token as
``?token=`` (they cannot set headers on a WebSocket). Without ``machine_id`` or ``line``
a socket watches every machine of the tenant. Every read is on record like an HTTP read: each
replayed batch and each live message gets an audit entry with the memory ids it holds,
committed before it is sent (a socket whose entry cannot be written is closed, 1011).
Close codes: 4401 missing, unknown or revoked token;
4422 bad ``line``; 4403 role too weak; 4404 unknown machine; 4429 too many failed attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import anyio
from litestar import WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect

from rae_edge.audit import actor_of
from rae_edge.errors import InvalidInputError, NotFoundError
from rae_edge.memory import MemoryService
from rae_edge.push import PushBus, Reader
from rae_edge.tokens import Principal
from rae_sync.domain import Role
from rae_tablet_api import guards
from rae_tablet_api.auth import Refusal, admit
from rae_tablet_api.schemas import PushMessageOut, PushPage

MAX_MACHINES = 200
MAX_LINES = 50
MAX_LINE_LEN = 128  # as Machine.line
PING_S = 25.0
ACTION = "WS /api/v1/push"


def _machines(memory: MemoryService, tenant: str, codes: list[str] | None) -> list[str]:
    codes = [c for c in (codes or []) if c.strip()]
    if len(codes) > MAX_MACHINES:
        raise NotFoundError(f"watch at most {MAX_MACHINES} machines per socket")
    return sorted({memory.machine(tenant, c).id for c in codes})


def _lines(names: list[str] | None) -> list[str]:
    """The production lines asked for: blanks dropped, each at most 128 characters."""
    lines = sorted({n.strip() for n in (names or []) if n.strip()})
    if len(lines) > MAX_LINES:
        raise InvalidInputError(f"watch at most {MAX_LINES} lines per socket")
    for n in lines:
        if len(n) > MAX_LINE_LEN:
            raise InvalidInputError(f"line name over {MAX_LINE_LEN} characters: {n[:40]!r}…")
    return lines


@websocket("/api/v1/push")
async def push_socket(socket: WebSocket[Any, Any, Any], memory: MemoryService, push: PushBus,
                      machine_id: list[str] | None = None,
                      line: list[str] | None = None, cursor: int | None = None) -> None:
    # Authenticated here (the same decision as the HTTP guards) rather than by a guard, so
    # a browser sees a close code it can act on (4401: ask for a new token).
    got = await admit(socket.scope, push.duck, Role.TECHNICIAN)
    if isinstance(got, Refusal):
        await socket.accept()
        await socket.close(code=4000 + got.status, reason=got.message[:120])
        return
    principal = got
    tenant = principal.tenant_id
    try:
        lines = _lines(line)
        machines = await anyio.to_thread.run_sync(_machines, memory, tenant, machine_id)
    except InvalidInputError as exc:
        await socket.accept()
        await socket.close(code=4422, reason=str(exc)[:120])
        return
    except NotFoundError as exc:
        await socket.accept()
        await socket.close(code=4404, reason=str(exc)[:120])
        return
    # Made for this reader: the bus puts every message on record before handing it over
    # (live ones in one group commit with every other tablet it reaches).
    sub = await push.subscribe(tenant, machines, cursor, lines,
                               reader=Reader(tenant, actor_of(principal), ACTION))
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
                                "lines": lines, "gap": sub.gap})
        # What was missed since the cursor (recorded a batch at a time), then live messages.
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
        results = await asyncio.gather(*tasks, return_exceptions=True)
        if not stop.is_set():
            # forward() failed (e.g. the audit log could not record): nothing more is sent.
            failed = any(isinstance(r, Exception) and not isinstance(r, WebSocketDisconnect)
                         for r in results)
            with contextlib.suppress(Exception):
                await socket.close(code=1011 if failed else 1000)


@get("/api/v1/push/messages", sync_to_thread=True, tags=["push"], guards=guards.TECHNICIAN,
     summary="Push messages after a cursor (HTTP form of WS /api/v1/push)")
def push_messages(principal: Principal, memory: MemoryService, push: PushBus,
                  machine_id: list[str] | None = None, line: list[str] | None = None,
                  cursor: int = 0, limit: int = 100) -> PushPage:
    """What a tablet watching ``machine_id`` and/or the machines of ``line`` (several of
    each allowed; neither: all machines) would have been pushed after ``cursor``, oldest
    first, at most ``limit``."""
    lines = _lines(line)
    machines = _machines(memory, principal.tenant_id, machine_id)
    msgs = push.since(principal.tenant_id, machines, max(0, cursor),
                      max(1, min(limit, 500)), lines)
    return PushPage(cursor=msgs[-1].cursor if msgs else max(0, cursor),
                    messages=[PushMessageOut(**m.to_json()) for m in msgs])


ROUTES = [push_socket, push_messages]
