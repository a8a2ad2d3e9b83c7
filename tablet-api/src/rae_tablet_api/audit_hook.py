"""Audit middleware: every authenticated API call lands in the node's audit log.

For each HTTP request under ``/api/`` that carries a valid token it records who (the
token's name and hash prefix, never the token), what (method and path), the answer's
status with the query string (any ``token`` parameter dropped) and which memory ids the
answer held (every ``"id"`` value and ``"ids"`` list item in a JSON body).

A JSON answer is held back until its entry is committed: a read that could not be put on
record is answered 500 instead of being served. Other answers (audio, files) stream and are
recorded when they end. Health and the OpenAPI document carry no data and are skipped.
The caller is looked up once per request (:func:`rae_tablet_api.auth.resolve_principal`,
the one bearer parser) and left in the ASGI scope for the guards and the ``principal``
dependency. The push WebSocket records its reads itself (``routes/push.py``).
"""

from __future__ import annotations

import errno
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio.to_thread
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from rae_edge.audit import AuditLog, actor_of, memory_ids
from rae_edge.node import EdgeNode
from rae_tablet_api.auth import resolve_principal

log = logging.getLogger(__name__)

MAX_HELD_BYTES = 32 * 1024 * 1024  # a JSON answer larger than this streams unparsed
_SECRET_PARAMS = {"token", "access_token"}


def _query(scope: Scope) -> str:
    raw = scope.get("query_string", b"").decode("latin-1")
    pairs = [(k, v) for k, v in parse_qsl(raw, keep_blank_values=True)
             if k.lower() not in _SECRET_PARAMS]
    return urlencode(pairs)


class AuditMiddleware(ASGIMiddleware):
    """Records authenticated API calls in the node's :class:`~rae_edge.audit.AuditLog`."""

    scopes = (ScopeType.HTTP,)
    exclude_path_pattern = ("^/api/v1/health$", "^/api/v1/schema")

    def __init__(self, node: EdgeNode, outbox: bool | None = None) -> None:
        self.node = node
        # The node's log (entries go to central when sync is on), unless told otherwise.
        self.audit = node.audit if outbox is None else AuditLog(node.duck, outbox=outbox)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        principal = (await resolve_principal(scope, self.node.duck)
                     if scope["path"].startswith("/api/") else None)
        if principal is None:  # unauthenticated: the guard refuses it, nothing is read
            await next_app(scope, receive, send)
            return
        action = f"{scope.get('method', 'WS')} {scope['path']}"
        query = _query(scope)
        held: list[Message] = []
        body = bytearray()
        state: dict[str, Any] = {"status": 0, "hold": False}

        async def record(ids: list[str]) -> None:
            resource = f"{state['status']} {query}".strip()
            await anyio.to_thread.run_sync(
                lambda: self.audit.record(principal.tenant_id, actor_of(principal), action,
                                          resource, ids))

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                ctype = dict(message.get("headers", [])).get(b"content-type", b"")
                state["hold"] = b"json" in ctype
                if state["hold"]:
                    held.append(message)
                else:
                    await send(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            more = message.get("more_body", False)
            if state["hold"]:
                body.extend(message.get("body", b""))
                held.append(message)
                if more and len(body) > MAX_HELD_BYTES:  # too big to hold: stream, ids unknown
                    state["hold"] = False
                    for m in held:
                        await send(m)
                    held.clear()
                    return
                if more:
                    return
                try:
                    ids = list(memory_ids(json.loads(bytes(body))))
                except ValueError:
                    ids = []
                try:
                    await record(ids)
                except Exception as exc:
                    log.exception("audit: could not record %s", action)
                    # nothing sent yet: refuse rather than serve
                    await _send_error(send, disk_full=_disk_full(exc))
                    return
                for m in held:
                    await send(m)
                return
            if not more:
                try:
                    await record([])
                except Exception:
                    log.exception("audit: could not record %s", action)
            await send(message)

        await next_app(scope, receive, audited_send)


def _disk_full(exc: BaseException) -> bool:
    return (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or \
        "No space left on device" in str(exc)


async def _send_error(send: Send, disk_full: bool = False) -> None:
    if disk_full:  # the node's fault, and a temporary one: same answer as any full-disk write
        err = {"code": "insufficient_storage", "message": "the node's disk is full: the audit "
               "log could not record this call, so it is not served; retry later"}
    else:
        err = {"code": "audit_unavailable",
               "message": "the audit log could not record this call"}
    payload = json.dumps({"error": err})
    await send({"type": "http.response.start", "status": 507 if disk_full else 500,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload.encode(), "more_body": False})


# Tokens look like ``rae_`` + 43 url-safe characters (rae_edge.tokens.create_token); a
# token in a WebSocket URL would otherwise reach uvicorn's access log.
_TOKEN_RE = re.compile(r"rae_[A-Za-z0-9_-]{20,}")
_installed = False


def redact(text: str) -> str:
    return _TOKEN_RE.sub("rae_[redacted]", text)


def install_token_redaction() -> None:
    """Makes every log record of the process drop anything shaped like an API token, so
    no token reaches a log line whichever library logs it (uvicorn's access log, httpx)."""
    global _installed
    if _installed:
        return
    _installed = True
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            text = record.getMessage()
        except Exception:  # a broken format string is the logger's problem, not ours
            return record
        if "rae_" in text:
            # Keep the shape of msg/args (formatters such as uvicorn's unpack args).
            if isinstance(record.msg, str):
                record.msg = redact(record.msg)
            if isinstance(record.args, tuple):
                record.args = tuple(redact(a) if isinstance(a, str) else a
                                    for a in record.args)
            elif isinstance(record.args, dict):
                record.args = {k: redact(v) if isinstance(v, str) else v
                               for k, v in record.args.items()}
            try:
                still = _TOKEN_RE.search(record.getMessage()) is not None
            except Exception:
                still = True
            if still:  # a token inside some object's repr: give up the structure
                record.msg, record.args = redact(text), ()
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks are formatted later from exc_info: format (and redact) them now.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
