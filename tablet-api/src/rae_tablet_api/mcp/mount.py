"""``/mcp`` on the node's Litestar app: the SDK's Streamable HTTP transport behind the same
bearer tokens as ``/api/v1``.

The token is checked here, before the SDK reads the request (a missing or unknown token is
a 401 in the API's error shape, and counts toward the same per-address failure limit);
the caller's principal rides in the ASGI scope to the tools. Stateless mode: each POST is
one JSON-RPC exchange answered as JSON, so nothing about a caller outlives its request.
DNS-rebinding checks of the SDK are off because a browser cannot add the bearer token a
rebinding attack would need; TLS and the bind address are the node's own.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, asgi
from litestar.types import HTTPResponseStartEvent, Receive, Scope, Send
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from rae_edge.audit import AuditLog
from rae_edge.node import EdgeNode
from rae_sync.domain import Role
from rae_tablet_api.auth import Refusal, admit
from rae_tablet_api.mcp.tools import PRINCIPAL_SCOPE_KEY, build_server

MANAGER_KEY = "mcp_manager"


async def _refuse(send: Send, status: int, code: str, message: str,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json"),
                                       (b"content-length", str(len(body)).encode()),
                                       *(headers or [])]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status,
                                     "headers": head}
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


@asgi("/mcp", is_mount=True, copy_scope=False, include_in_schema=False)
async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    app = Litestar.from_scope(scope)
    node: EdgeNode = app.state.node
    got = await admit(scope, node.duck, Role.TECHNICIAN)  # the API's one admission rule
    if isinstance(got, Refusal):
        code = {401: "unauthorized", 403: "forbidden", 429: "rate_limited"}.get(
            got.status, "unauthorized")
        headers = ([(b"retry-after", str(got.retry_after_s).encode())]
                   if got.retry_after_s is not None else [(b"www-authenticate", b"Bearer")])
        await _refuse(send, got.status, code, got.message, headers)
        return
    principal = got
    scope[PRINCIPAL_SCOPE_KEY] = principal  # type: ignore[literal-required]
    manager: StreamableHTTPSessionManager = app.state[MANAGER_KEY]
    await manager.handle_request(scope, receive, send)  # type: ignore[arg-type]


@asynccontextmanager
async def mcp_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Builds the node's MCP server and runs its session manager while the app runs."""
    node: EdgeNode = app.state.node
    audit: AuditLog = app.state.audit  # the app's audit log (one chain, one sync rule)
    server = build_server(node, audit)
    server.streamable_http_app(
        stateless_http=True, json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    app.state[MANAGER_KEY] = server.session_manager
    async with server.session_manager.run():
        yield
