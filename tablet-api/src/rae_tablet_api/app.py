"""The Litestar application: routes under ``/api/v1``, errors in the INTERFACE shape."""

from __future__ import annotations

import errno
import importlib
import logging
import pkgutil
from typing import Any

from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from rae_edge.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RaeError,
)
from rae_edge.node import EdgeNode
from rae_edge.store.idempotency import IdempotencyStore
from rae_tablet_api.audit_hook import AuditMiddleware
from rae_tablet_api.idempotency import IdempotencyMiddleware
from rae_tablet_api.metrics import RequestMetrics
from rae_tablet_api.services import dependencies

log = logging.getLogger(__name__)

_STATUS = {
    NotFoundError: 404,
    InvalidInputError: 422,
    ConflictError: 409,
    PermissionDeniedError: 403,
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        err["details"] = details
    return {"error": err}


def _rae_error(_: Request[Any, Any, Any], exc: RaeError) -> Response[Any]:
    status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 500)
    return Response(error_body(exc.code, str(exc)), status_code=status)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    code = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 413: "too_large", 429: "rate_limited"}.get(
        exc.status_code, "error")
    details = getattr(exc, "extra", None) or None
    return Response(error_body(code, str(exc.detail), details), status_code=exc.status_code,
                    headers=getattr(exc, "headers", None))


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A fault of the node itself: 507 when its disk is full (the write was not stored, the
    caller may retry later), else 500. Never a stack trace or a stored value in the body."""
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or \
            "No space left on device" in str(exc):
        log.error("disk full while serving %s %s", request.method, request.url.path)
        return Response(error_body("insufficient_storage",
                                   "the node's disk is full: nothing was stored; retry later"),
                        status_code=507)
    log.exception("internal error serving %s %s", request.method, request.url.path)
    return Response(error_body("internal", "internal error of the node; see its log"),
                    status_code=500)


def _collect_routes(name: str = "ROUTES") -> list[Any]:
    """Every ``routes`` module's ``name`` list (``ROUTES``, or ``LIFESPANS``: async context
    managers that run while the app runs), in module name order."""
    import rae_tablet_api.routes as pkg

    handlers: list[Any] = []
    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        handlers.extend(getattr(importlib.import_module(f"{pkg.__name__}.{mod.name}"),
                                name, []))
    return handlers


def create_app(node: EdgeNode) -> Litestar:
    """The app for one node: every ``routes`` module's ``ROUTES``, the services a handler
    may take by name (:mod:`rae_tablet_api.services`: ``principal``, ``memory``, ...),
    errors in the INTERFACE shape, OpenAPI at /api/v1/schema."""
    audit = AuditMiddleware(node)
    return Litestar(
        route_handlers=_collect_routes(),
        dependencies=dependencies(),
        state=State({"node": node, "audit": audit.audit}),
        exception_handlers={RaeError: _rae_error, HTTPException: _http_error,
                            Exception: _internal_error},
        openapi_config=OpenAPIConfig(title="RAE Edge tablet API", version="1.0.0",
                                     path="/api/v1/schema"),
        # Background workers start with the app (queued voice notes resume after a restart).
        on_startup=[lambda: node.voice.start(), lambda: node.memory.jobs.resume(),
                    lambda: node.start_sync(),
                    lambda: node.alarms.start()],
        on_shutdown=[lambda: node.alarms.stop(),
                     lambda: node.close()],
        lifespan=_collect_routes("LIFESPANS"),
        # Every authenticated call is put on record; bodies are capped (uploads included).
        # Request latency is measured outermost (audit and idempotency included).
        middleware=[RequestMetrics(node), audit,
                    IdempotencyMiddleware(IdempotencyStore(node.duck))],
        request_max_body_size=node.settings.api.max_upload_mb * 1024 * 1024,
    )
