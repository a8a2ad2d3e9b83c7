"""Prometheus metrics of the tablet API: per-route request latency, and the registry that
``GET /metrics`` serves (routes ``metrics``).

One :class:`~prometheus_client.CollectorRegistry` per node (:func:`registry_for`): the
request histogram and counter of this app, the node's own collectors
(:func:`rae_edge.metrics.collectors`: embedding and transcription timings, push, outbox,
sync, voice and ingest queues, anything registered by an alarm connector) and the process
(RSS, CPU, open files, GC).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from rae_edge import metrics as node_metrics
from rae_edge.node import EdgeNode

_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.025, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class NodeMetrics:
    registry: CollectorRegistry
    latency: Histogram
    requests: Counter


_by_node: weakref.WeakKeyDictionary[EdgeNode, NodeMetrics] = weakref.WeakKeyDictionary()


def registry_for(node: EdgeNode) -> NodeMetrics:
    """The node's registry and request metrics (made once per node)."""
    found = _by_node.get(node)
    if found is None:
        reg = CollectorRegistry(auto_describe=False)
        latency = Histogram("rae_http_request_duration_seconds",
                            "Time to answer an HTTP request, by route template",
                            ["method", "route"], buckets=_BUCKETS, registry=reg)
        requests = Counter("rae_http_requests", "HTTP requests answered, by route and status",
                           ["method", "route", "status"], registry=reg)
        for c in node_metrics.collectors(node):
            reg.register(c)
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)
        found = _by_node[node] = NodeMetrics(reg, latency, requests)
    return found


class RequestMetrics(ASGIMiddleware):
    """Times every HTTP request from its start to the last byte of its answer, labelled
    with the route's template (``/api/v1/machines/{code}/briefing``, not each code)."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, node: EdgeNode) -> None:
        self.metrics = registry_for(node)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = time.perf_counter()
        status = [500]

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, timed_send)
        finally:
            route = str(scope.get("path_template") or "unmatched")
            method = str(scope.get("method", "GET"))
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(method, route, str(status[0])).inc()
