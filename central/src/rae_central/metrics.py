"""``GET /metrics`` of central (Prometheus text format), read from the database when scraped.

The ingest workers are separate processes, so what they did is read from what they wrote:

- ``rae_central_messages_total{tenant}``: messages accepted (``rate()`` of it: messages/s);
- ``rae_central_dead_letters_total{tenant}``: messages refused, kept with their reason
  (``tenant=""``: unreadable topic; counted among the newest :data:`UNKNOWN_CAP`);
- ``rae_central_fanout_pending``: down messages owed to nodes, not yet handed to the broker;
- per node (``tenant``, ``site``, ``node``): ``rae_central_node_lag_seconds`` (the age of
  the oldest fact in the node's outbox, as its last status said),
  ``rae_central_node_outbox_depth``, ``rae_central_node_seconds_since_seen``,
  ``rae_central_node_missing_seqs`` (gaps below the highest seq seen),
  ``rae_central_node_last_seq``, ``rae_central_node_replay_requests_total``,
  ``rae_central_node_dead_letters``;
- the serving process itself (RSS, CPU).

Open to loopback callers; from another host it needs the operator's admin token.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector
from prometheus_client import generate_latest as _render
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text

from rae_central.store import CentralStore

_NODE = ["tenant", "site", "node"]
UNKNOWN_CAP = 10_000  # dead letters of no known tenant are counted among the newest this many


class CentralCollector(Collector):
    """Reads the counters and each node's stream state from the database."""

    def __init__(self, store: CentralStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        # The application role sees one tenant at a time (row level security): the fleet
        # functions for node health, then one scoped count per tenant.
        nodes = self.store.fleet_overview()
        dead: list[tuple[str, int]] = []
        fanout = 0
        for tenant in self.store.tenants():
            with self.store.tx(tenant) as conn:
                dead.append((tenant, int(conn.execute(
                    text("SELECT count(*) FROM dead_letters")).scalar_one())))
                fanout += int(conn.execute(text("SELECT count(*) FROM fanout")).scalar_one())
        unknown = [d for d in self.store.fleet_dead_letters(UNKNOWN_CAP)
                   if not d["tenant_id"]]
        dead.append(("", len(unknown)))
        msgs = CounterMetricFamily("rae_central_messages", "Messages accepted from edge nodes",
                                   labels=["tenant"])
        per_tenant: dict[str, int] = {}
        for n in nodes:
            per_tenant[n["tenant_id"]] = per_tenant.get(n["tenant_id"], 0) + int(n["messages"])
        for tenant, _ in dead:
            if tenant:  # an enrolled tenant with no message yet shows 0
                per_tenant.setdefault(tenant, 0)
        for tenant, count in sorted(per_tenant.items()):
            msgs.add_metric([tenant], float(count))
        yield msgs
        dl = CounterMetricFamily("rae_central_dead_letters", "Messages refused (kept with "
                                 "the reason; tenant '' when the topic was unreadable)",
                                 labels=["tenant"])
        for tenant, count in dead:
            dl.add_metric([tenant], float(count))
        yield dl
        yield GaugeMetricFamily("rae_central_fanout_pending", "Down messages owed to nodes "
                                "and not yet handed to the broker", value=float(fanout))
        yield from _node_metrics(nodes)


def _node_metrics(nodes: list[dict[str, Any]]) -> Iterator[Metric]:
    now = datetime.now(UTC)
    fams = {
        "lag": GaugeMetricFamily("rae_central_node_lag_seconds", "Age of the oldest fact in "
                                 "the node's outbox, as its last status said", labels=_NODE),
        "depth": GaugeMetricFamily("rae_central_node_outbox_depth", "Facts in the node's "
                                   "outbox, as its last status said", labels=_NODE),
        "seen": GaugeMetricFamily("rae_central_node_seconds_since_seen", "Seconds since a "
                                  "message of the node arrived", labels=_NODE),
        "missing": GaugeMetricFamily("rae_central_node_missing_seqs", "Seqs missing below the "
                                     "highest seen (gaps, replay requested)", labels=_NODE),
        "last": GaugeMetricFamily("rae_central_node_last_seq", "Contiguous watermark of the "
                                  "node's stream", labels=_NODE),
        "dead": GaugeMetricFamily("rae_central_node_dead_letters", "Dead letters of the node",
                                  labels=_NODE),
    }
    replays = CounterMetricFamily("rae_central_node_replay_requests", "Replays central asked "
                                  "the node for", labels=_NODE)
    for n in nodes:
        if n["revoked_at"]:
            continue
        key = [n["tenant_id"], n["site_id"], n["node_id"]]
        if n["lag_s"] is not None:
            fams["lag"].add_metric(key, float(n["lag_s"]))
        if n["outbox_depth"] is not None:
            fams["depth"].add_metric(key, float(n["outbox_depth"]))
        if n["last_seen"]:
            seen = datetime.fromisoformat(n["last_seen"])
            fams["seen"].add_metric(key, max(0.0, (now - seen).total_seconds()))
        fams["missing"].add_metric(key, float(n["missing_seqs"]))
        fams["last"].add_metric(key, float(n["last_seq"]))
        fams["dead"].add_metric(key, float(n["dead_letters"]))
        replays.add_metric(key, float(n["replay_requests"]))
    yield from fams.values()
    yield replays


def _registry(state: State) -> CollectorRegistry:
    reg: CollectorRegistry | None = state.get("metrics_registry")
    if reg is None:
        reg = CollectorRegistry(auto_describe=False)
        reg.register(CentralCollector(state.store))
        ProcessCollector(registry=reg)
        state["metrics_registry"] = reg
    return reg


def _loopback(request: Request[Any, Any, Any]) -> bool:
    try:
        return ipaddress.ip_address(request.client.host if request.client else "").is_loopback
    except ValueError:
        return False


@get("/metrics", sync_to_thread=True, summary="Prometheus metrics", include_in_schema=True)
def metrics(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    if not _loopback(request):
        given = request.headers.get("authorization", "")
        token: str | None = state.admin_token
        if not (token and given.startswith("Bearer ")
                and hmac.compare_digest(given[7:].encode(), token.encode())):
            raise NotAuthorizedException(detail="GET /metrics from another host needs the "
                                         "operator's admin token (Authorization: Bearer)")
    return Response(_render(_registry(state)), media_type=CONTENT_TYPE_LATEST)
