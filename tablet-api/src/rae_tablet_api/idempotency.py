"""``Idempotency-Key`` on ``POST /corrections``, ``/incidents``, ``/voice-notes`` and
``/feedback`` (a verdict queued offline by the tablet is sent again with its key).

An ASGI middleware, so the handlers stay as they are. With the header, per tenant:

- first request with a key: runs; its answer (status, content type, body) is kept on disk
  (:class:`rae_edge.store.idempotency.IdempotencyStore`) before it is sent;
- the same key again: nothing runs, the first answer is sent again with
  ``Idempotent-Replayed: true``;
- the same key while the first request still runs: waits for it (up to
  :data:`WAIT_S`), then answers its result; past that, ``409 idempotency_in_flight``;
- the same key with another body or on another route: ``422 idempotency_key_reused``;
- a malformed key (empty, over 255 characters, not visible ASCII): ``400``.

Answers of node faults (5xx) and refusals of the credentials or size (401, 403, 408, 413,
429) are not kept: the request may be sent again with the same key once the cause is gone
(unless it wrote something: see below). It runs inside
:class:`~rae_tablet_api.audit_hook.AuditMiddleware`, which finds the caller's tenant;
without a valid token the request passes through and the handler refuses it.

The handler's write marks the key written in the write's own transaction (the request is
served inside :func:`rae_edge.store.idempotency.serving`; the writer calls
``note_written``). A node killed after that commit but before the answer is kept (or a
fault answered after the write) leaves the key marked: the retry runs nothing and is
answered ``200`` with ``{"replayed": true, "answer_lost": true, "stored": [{"fact",
"ids"}], "message"}`` (the first answer was never sent; this one is kept for later
retries).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import anyio
import anyio.to_thread
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from rae_edge.store.idempotency import (
    RUNNING,
    WRITTEN,
    IdempotencyStore,
    KeptAnswer,
    ServedKey,
    serving,
)
from rae_tablet_api.auth import resolve_principal

log = logging.getLogger(__name__)

ROUTES = frozenset({"/api/v1/corrections", "/api/v1/incidents", "/api/v1/voice-notes",
                    "/api/v1/feedback"})
HEADER = b"idempotency-key"
MAX_KEY_LEN = 255
WAIT_S = 30.0
_NOT_KEPT = frozenset({401, 403, 408, 413, 429})


def _key_of(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == HEADER:
            return bytes(value)
    return None


def _valid(raw: bytes) -> str | None:
    if not 1 <= len(raw) <= MAX_KEY_LEN or any(b < 0x21 or b > 0x7E for b in raw):
        return None
    return raw.decode("ascii")


async def _answer(send: Send, status: int, content_type: str, body: bytes,
                  replayed: bool = False) -> None:
    headers = [(b"content-type", content_type.encode("latin-1")),
               (b"content-length", str(len(body)).encode())]
    if replayed:
        headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await _answer(send, status, "application/json", body)


class _BodyHash:
    """SHA-256 of a request body, minus its multipart boundary (a client draws a new one
    each time it sends the same form, so the same note would not hash the same)."""

    def __init__(self, scope: Scope) -> None:
        self._digest = hashlib.sha256()
        self._tail = b""
        self._boundary = b""
        for name, value in scope.get("headers", []):
            if name == b"content-type" and b"boundary=" in value:
                self._boundary = value.split(b"boundary=", 1)[1].split(b";")[0].strip(b'" ')

    def update(self, chunk: bytes) -> None:
        if not self._boundary:
            self._digest.update(chunk)
            return
        data = (self._tail + chunk).replace(self._boundary, b"")
        keep = len(self._boundary) - 1  # a boundary split across chunks starts in here
        self._tail = data[-keep:] if keep else b""
        self._digest.update(data[:len(data) - len(self._tail)])

    def hexdigest(self) -> str:
        self._digest.update(self._tail)
        self._tail = b""
        return self._digest.hexdigest()


async def _drain(scope: Scope, receive: Receive) -> str:
    """Reads the whole request body (a replay runs nothing) and returns its hash."""
    digest = _BodyHash(scope)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        digest.update(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return digest.hexdigest()


class IdempotencyMiddleware(ASGIMiddleware):
    """Keeps and replays first answers per (tenant, ``Idempotency-Key``)."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, store: IdempotencyStore) -> None:
        self.store = store
        # Keys whose first request runs in this process (one process writes the DuckDB
        # file, so this is every running one): waiters block on the event.
        self._running: dict[tuple[str, str], anyio.Event] = {}

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        raw = _key_of(scope)
        if raw is None or scope.get("method") != "POST" or scope["path"] not in ROUTES:
            await next_app(scope, receive, send)
            return
        key = _valid(raw)
        if key is None:
            await _drain(scope, receive)
            await _error(send, 400, "invalid_idempotency_key",
                         f"the Idempotency-Key header must be 1 to {MAX_KEY_LEN} visible "
                         "ASCII characters (a UUID is a good key)")
            return
        # Looked up once per request (the audit middleware usually did it already).
        known = await resolve_principal(scope, self.store.duck)
        if known is None:  # no valid token: the handler refuses it, nothing is kept
            await next_app(scope, receive, send)
            return
        tenant = known.tenant_id
        route = scope["path"]
        slot = (tenant, key)
        deadline = anyio.current_time() + WAIT_S
        while (running := self._running.get(slot)) is not None:  # being served: wait for it
            with anyio.move_on_after(deadline - anyio.current_time()):
                await running.wait()
            if slot in self._running and anyio.current_time() >= deadline:
                await _drain(scope, receive)
                await _error(send, 409, "idempotency_in_flight",
                             "a request with this Idempotency-Key is still running; "
                             "send it again later")
                return
        done = anyio.Event()
        self._running[slot] = done  # no await since the check: this request owns the slot
        try:
            kept = await anyio.to_thread.run_sync(self.store.claim, tenant, key, route)
            if kept is not None and kept.status == RUNNING:  # its process died: nothing written
                await anyio.to_thread.run_sync(self.store.take_over, tenant, key, route)
                kept = None
            if kept is not None and kept.status == WRITTEN:  # died after writing: answer lost
                kept = await self._lost_answer(tenant, key, kept)
            if kept is not None:
                await self._replay(kept, route, scope, receive, send)
                return
            await self._first(tenant, key, scope, receive, send, next_app)
        finally:
            del self._running[slot]
            done.set()

    async def _replay(self, kept: KeptAnswer, route: str, scope: Scope, receive: Receive,
                      send: Send) -> None:
        fingerprint = await _drain(scope, receive)
        if kept.route != route or kept.fingerprint != fingerprint:
            await _error(send, 422, "idempotency_key_reused",
                         f"this Idempotency-Key was used for a different request (to "
                         f"{kept.route}); use a new key for a new request")
            return
        await _answer(send, kept.status, kept.content_type, kept.body, replayed=True)

    async def _lost_answer(self, tenant: str, key: str, kept: KeptAnswer) -> KeptAnswer:
        """The answer kept for a request whose write was committed by a process that died
        before keeping its answer (what it stored, in place of the answer never sent)."""
        body = json.dumps({
            "replayed": True, "answer_lost": True, "stored": json.loads(kept.body or b"[]"),
            "message": "this request was stored before; its first answer was lost (the "
                       "node failed or restarted before answering): nothing was stored "
                       "again"}).encode()
        answer = KeptAnswer(kept.route, kept.fingerprint, 200, "application/json", body)
        await anyio.to_thread.run_sync(self.store.complete, tenant, key, kept.fingerprint,
                                       answer.status, answer.content_type, answer.body)
        return answer

    async def _first(self, tenant: str, key: str, scope: Scope, receive: Receive, send: Send,
                     next_app: ASGIApp) -> None:
        digest = _BodyHash(scope)
        held: list[Message] = []
        body = bytearray()
        state: dict[str, Any] = {"status": 0, "ctype": "", "finished": False}

        async def hashing_receive() -> ReceiveMessage:
            message = await receive()
            if message["type"] == "http.request":
                digest.update(message.get("body", b""))
            return message

        async def holding_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["ctype"] = dict(message.get("headers", [])).get(
                    b"content-type", b"application/octet-stream").decode("latin-1")
                held.append(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            held.append(message)
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            state["finished"] = True
            status = int(state["status"])
            if status < 500 and status not in _NOT_KEPT:
                try:
                    await anyio.to_thread.run_sync(
                        self.store.complete, tenant, key, digest.hexdigest(), status,
                        str(state["ctype"]), bytes(body))
                except Exception:  # the write itself is done: answer it, say what failed
                    log.exception("idempotency: could not keep the answer for a key")
            else:
                await anyio.to_thread.run_sync(self.store.release, tenant, key)
            for m in held:
                await send(m)

        try:
            with serving(ServedKey(tenant, key, digest.hexdigest)):
                await next_app(scope, hashing_receive, holding_send)
        finally:
            if not state["finished"]:  # no answer (client gone, app fault): forget the claim
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.store.release, tenant, key)
