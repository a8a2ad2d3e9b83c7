"""``GET /metrics`` (no ``/api/v1`` prefix): the node's Prometheus metrics in the text
format. Open to loopback callers (an exporter or agent on the appliance); from anywhere
else it needs an admin token (``Authorization: Bearer``)."""

from __future__ import annotations

import ipaddress
from typing import Any

import anyio.to_thread
from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rae_edge.node import EdgeNode
from rae_sync.domain import Role
from rae_tablet_api.auth import Refusal, admit
from rae_tablet_api.metrics import registry_for


def _loopback(request: Request[Any, Any, Any]) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@get("/metrics", tags=["metrics"], summary="Prometheus metrics",
     description="Prometheus text format: per-route latency, push, outbox and sync lag, "
                 "transcription, embedding, ingest jobs. Loopback, or an admin token.")
async def metrics(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    node: EdgeNode = state.node
    if not _loopback(request):
        admitted = await admit(request.scope, node.duck, Role.ADMIN)
        if isinstance(admitted, Refusal):
            if admitted.status == 401:
                raise NotAuthorizedException("GET /metrics from another host needs an admin "
                                             "token (Authorization: Bearer <token>)")
            raise admitted.as_http()
    body = await anyio.to_thread.run_sync(generate_latest, registry_for(node).registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


ROUTES = [metrics]
