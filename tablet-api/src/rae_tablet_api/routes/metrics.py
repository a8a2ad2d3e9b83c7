"""``GET /metrics`` (no ``/api/v1`` prefix): the node's Prometheus metrics in the text
format. Open to loopback callers (an exporter or agent on the appliance); from anywhere
else it needs an admin token (``Authorization: Bearer``)."""

from __future__ import annotations

import ipaddress
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rae_edge.node import EdgeNode
from rae_edge.tokens import authenticate
from rae_sync.domain import Role
from rae_tablet_api.auth import require, token_from
from rae_tablet_api.metrics import registry_for


def _loopback(request: Request[Any, Any, Any]) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@get("/metrics", sync_to_thread=True, tags=["metrics"], summary="Prometheus metrics",
     description="Prometheus text format: per-route latency, push, outbox and sync lag, "
                 "transcription, embedding, ingest jobs. Loopback, or an admin token.")
def metrics(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    node: EdgeNode = state.node
    if not _loopback(request):
        token = token_from(request)
        principal = authenticate(node.duck, token) if token else None
        if principal is None:
            raise NotAuthorizedException("GET /metrics from another host needs an admin "
                                         "token (Authorization: Bearer <token>)")
        require(principal, Role.ADMIN)
    body = generate_latest(registry_for(node).registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


ROUTES = [metrics]
