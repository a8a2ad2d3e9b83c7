"""Central's ``GET /metrics`` on a real PostgreSQL (as the application's role), over real
HTTP, parsed with prometheus-client's parser: messages per tenant, dead letters, per-node
lag and gaps; the numbers move when messages arrive. Loopback needs no token; another
host needs the operator's token."""

from __future__ import annotations

import httpx
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from rae_central.admin.app import create_app
from rae_central.config import CentralSettings
from rae_central.db.engine import make_engine
from rae_central.store import Accepted, CentralStore, NodeStatus
from tests.central.test_store import OTHER, A, _cor, store  # noqa: F401  (fixture)
from tests.fixtures.live_app import serve
from tests.tablet_api.test_metrics import dashboard_series

TOKEN = "operator-metrics-token"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
NODE_A = {"tenant": "acme", "site": "plant-1", "node": "node-a"}


def _samples(body: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body) for s in f.samples}


def _v(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_central_metrics_move_with_messages(store: CentralStore,  # noqa: F811
                                            pg_url: str) -> None:
    app_store = CentralStore(make_engine(CentralSettings(database_url=pg_url).app_url()))
    app = create_app(app_store, TOKEN)
    store.ingest([_cor(A, 1), _cor(A, 3), _cor(OTHER, 1),
                  Accepted(A, "st-9", 4, "h", "node_status", "status",
                           status=NodeStatus(outbox_depth=12, lag_s=4.0))])
    store.dead_letter([("rae/v1/acme/plant-1/node-a/up/correction", b"{", "malformed JSON", A),
                       ("garbage/topic", b"???", "malformed: topic", None)])
    with serve(app) as url:
        r = httpx.get(f"{url}/metrics", timeout=30)
        assert r.status_code == 200, r.text
        first = _samples(r.text)
        assert _v(first, "rae_central_messages_total", tenant="acme") == 3
        assert _v(first, "rae_central_messages_total", tenant="globex") == 1
        assert _v(first, "rae_central_dead_letters_total", tenant="acme") == 1
        assert _v(first, "rae_central_dead_letters_total", tenant="") == 1
        assert _v(first, "rae_central_node_lag_seconds", **NODE_A) == 4.0
        assert _v(first, "rae_central_node_outbox_depth", **NODE_A) == 12
        assert _v(first, "rae_central_node_missing_seqs", **NODE_A) == 1  # seq 2
        assert _v(first, "rae_central_node_last_seq", **NODE_A) == 1
        assert _v(first, "rae_central_node_dead_letters", **NODE_A) == 1
        assert 0 <= _v(first, "rae_central_node_seconds_since_seen", **NODE_A) < 60
        assert _v(first, "process_resident_memory_bytes") > 0
        # seq 2 arrives: the gap closes, the watermark moves, the counter grows
        store.ingest([_cor(A, 2)])
        second = _samples(httpx.get(f"{url}/metrics", timeout=30).text)
        assert _v(second, "rae_central_messages_total", tenant="acme") == 4
        assert _v(second, "rae_central_node_missing_seqs", **NODE_A) == 0
        assert _v(second, "rae_central_node_last_seq", **NODE_A) == 4
        # The committed Grafana dashboard asks only for series central serves.
        assert dashboard_series("rae_central_") <= {n for n, _ in second}
        assert len(dashboard_series("rae_central_")) >= 7
    # Not from loopback (Litestar's test client is "testclient"): the operator token only.
    with TestClient(app) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and "rae_central_node_lag_seconds" in ok.text

