"""``GET /metrics`` of a real node over HTTP, parsed with prometheus-client's own parser.

The series named in the INTERFACE exist, and they move with real work: briefings and a
correction (route latency, embedding time, outbox depth), a push socket and an incident
(sockets, messages), a voice note transcribed by the real Whisper model (transcription
queue and time), a shift report uploaded as a document (ingest jobs). Loopback needs no
token; another host needs an admin token.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token
from rae_sync.domain import Role
from rae_tablet_api.app import create_app
from tests.conftest import ROOT, shared_data
from tests.fixtures.live_app import serve

MACHINE = {"id": "PRESS-07", "name": "Hydraulic press 7", "qr_code": "QR:P1:PRESS-07",
           "site": "plant-1", "line": "L2"}
BRIEFING_ROUTE = "/api/v1/machines/{code}/briefing"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, **kw: object) -> Samples:
    r = httpx.get(f"{url}/metrics", timeout=30, **kw)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def names(samples: Samples) -> set[str]:
    return {n for n, _ in samples}


def _wait(what: str, cond: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _outside_ip() -> str | None:
    """An address of this machine that is not loopback (a caller from "another host")."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # UDP connect sends nothing; it picks a route
            ip = str(s.getsockname()[0])
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


@pytest.fixture(scope="module")
def node_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, EdgeNode,
                                                                          dict[str, str]]]:
    data = tmp_path_factory.mktemp("metrics") / "node"
    # Sync on (a broker URL) but no identity: the agent does not run, so the outbox keeps
    # what the node queues and its depth and age can be seen to move.
    node = EdgeNode(config.load(None, data_dir=data, node={"tenant_id": "acme"},
                                sync={"mqtt_url": "mqtt://127.0.0.1:9"}))
    tokens = {r.value: create_token(node.duck, "acme", r, f"metrics {r.value}") for r in Role}
    try:
        with serve(create_app(node), host="0.0.0.0") as url:
            yield url.replace("0.0.0.0", "127.0.0.1"), node, tokens
    finally:
        node.close()


def test_series_exist_and_move_with_work(node_url: tuple[str, EdgeNode, dict[str, str]],
                                         tmp_path: Path) -> None:
    url, _, tokens = node_url
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    before = scrape(url)
    for name in ("rae_push_sockets",
                 "rae_push_messages_total", "rae_outbox_depth", "rae_outbox_oldest_age_seconds",
                 "rae_sync_enabled", "rae_embedding_seconds_count",
                 "rae_transcription_seconds_count", "rae_transcribed_audio_seconds_total",
                 "rae_embedding_texts_total", "process_resident_memory_bytes"):
        assert name in names(before), name
    api = f"{url}/api/v1"
    assert httpx.post(f"{api}/machines", json=[MACHINE], headers=admin,
                      timeout=30).status_code in (200, 201)
    for _ in range(3):
        r = httpx.get(f"{api}/machines/PRESS-07/briefing", headers=admin, timeout=30)
        assert r.status_code == 200, r.text
    r = httpx.post(f"{api}/corrections", headers=admin, timeout=60,
                   json={"machine_id": "PRESS-07", "text": "Sensor X was loose, not broken"})
    assert r.status_code == 201, r.text
    ws_url = url.replace("http://", "ws://") + f"/api/v1/push?machine_id=PRESS-07" \
        f"&token={tokens['technician']}"
    with connect(ws_url) as ws:
        assert '"hello"' in str(ws.recv(timeout=30))
        _wait("the push socket in the metrics",
              lambda: value(scrape(url), "rae_push_sockets") == 1.0)
        r = httpx.post(f"{api}/incidents", headers=admin, timeout=60, json=[{
            "machine_id": "PRESS-07", "occurred_at": "2026-11-20T02:10:00+00:00",
            "error_code": "E404", "symptom": "Ram stops mid-stroke"}])
        assert r.status_code == 200, r.text
        # Only briefing pushes are sent soon after the answer, so the last scan's may still
        # arrive after the socket opened: skip those, but only those.
        while (msg := json.loads(ws.recv(timeout=30)))["type"] != "incident":
            assert msg["type"] == "briefing", msg
    audio = shared_data("audio", "jfk.flac")
    r = httpx.post(f"{api}/voice-notes", headers=admin, timeout=60,
                   files={"audio": ("jfk.flac", audio.read_bytes(), "audio/flac")},
                   data={"machine_id": "PRESS-07"})
    assert r.status_code == 202, r.text
    report = "# Night shift 2026-11-20\nPress 7 stopped with E404, sensor X tightened.\n"
    r = httpx.post(f"{api}/documents", headers=admin, timeout=60, data={"kind": "shift"},
                   files={"file": ("night.md", report.encode(), "text/markdown")})
    assert r.status_code == 202, r.text
    _wait("the transcription and the ingest job", lambda: (
        value(scrape(url), "rae_voice_notes", status="draft") == 1.0
        and value(scrape(url), "rae_ingest_jobs", status="done") == 1.0))
    after = scrape(url)
    count = "rae_http_request_duration_seconds_count"
    assert value(after, count, method="GET", route=BRIEFING_ROUTE) == 3
    assert value(after, "rae_http_request_duration_seconds_bucket", method="GET",
                 route=BRIEFING_ROUTE, le="+Inf") == 3
    assert value(after, count, method="GET", route="/metrics") > 1
    assert value(after, "rae_http_requests_total", method="GET", route=BRIEFING_ROUTE,
                 status="200") == 3
    assert value(after, "rae_http_requests_total", method="POST", route="/api/v1/corrections",
                 status="201") == 1
    assert value(after, "rae_embedding_seconds_count") > value(before,
                                                              "rae_embedding_seconds_count")
    assert value(after, "rae_embedding_texts_total") >= value(
        before, "rae_embedding_texts_total") + 2  # the correction and the incident at least
    assert value(after, "rae_outbox_depth") > value(before, "rae_outbox_depth")
    assert value(after, "rae_outbox_oldest_age_seconds") > 0
    assert value(after, "rae_push_messages_total") > value(before, "rae_push_messages_total")
    assert value(after, "rae_push_sockets") == 0  # closed again
    assert value(after, "rae_transcription_seconds_count") == value(
        before, "rae_transcription_seconds_count") + 1
    assert value(after, "rae_transcribed_audio_seconds_total") - value(
        before, "rae_transcribed_audio_seconds_total") == pytest.approx(11.0, abs=0.5)
    assert value(after, "rae_sync_enabled") == 0
    # Where a write's time goes: each step of the one write path is timed, per kind of fact
    # (process-wide histograms: count what this test wrote, not what other tests did).
    steps = "rae_write_step_seconds_count"
    for step in ("store", "outbox", "wake_sync", "push", "index", "drift"):
        assert value(after, steps, fact="correction", step=step) - value(
            before, steps, fact="correction", step=step) >= 1, step
        assert value(after, steps, fact="incident", step=step) - value(
            before, steps, fact="incident", step=step) >= 1, step
    assert value(after, "rae_write_step_seconds_sum", fact="incident", step="index") > value(
        before, "rae_write_step_seconds_sum", fact="incident", step="index")
    # The stores' own memory (where a growing RSS sits): DuckDB's tables hold the rows
    # written above, LanceDB's caches the indexes the searches of the writes loaded.
    duck = {dict(labels)["tag"]: v for (n, labels), v in after.items()
            if n == "rae_duckdb_memory_bytes"}
    assert "BASE_TABLE" in duck and sum(duck.values()) > 0
    assert value(after, "rae_lancedb_cache_bytes") > 0
    assert value(after, "rae_lancedb_index_cache_capacity_bytes") >= 256 * 2**20
    assert ("rae_lancedb_cache_renewals_total", ()) in after


def test_another_host_needs_an_admin_token(
        node_url: tuple[str, EdgeNode, dict[str, str]]) -> None:
    url, _, tokens = node_url
    ip = _outside_ip()
    if ip is None:
        pytest.skip("this machine has no address but loopback")
    outside = url.replace("127.0.0.1", ip)
    r = httpx.get(f"{outside}/metrics", timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = httpx.get(f"{outside}/metrics", timeout=30,
                  headers={"Authorization": f"Bearer {tokens['technician']}"})
    assert r.status_code == 403, r.text
    ok = scrape(outside, headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert "rae_outbox_depth" in names(ok)


def dashboard_series(prefix: str) -> set[str]:
    """The series the committed Grafana dashboard queries whose name starts with ``prefix``."""
    dash = json.loads((ROOT / "monitoring" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    return {n for e in exprs for n in re.findall(r"\b(" + prefix + r"[a-z_]+)\b", e)}


def test_dashboard_queries_only_series_the_node_serves(
        node_url: tuple[str, EdgeNode, dict[str, str]]) -> None:
    url = node_url[0]
    httpx.get(f"{url}/api/v1/health", timeout=30)  # a request: the latency series exist
    body = httpx.get(f"{url}/metrics", timeout=30).text
    served = {s.name for f in text_string_to_metric_families(body) for s in f.samples}
    # a family with no sample now (no running job, sync off) is announced all the same
    served |= {f.name for f in text_string_to_metric_families(body)}
    wanted = dashboard_series("rae_") - dashboard_series("rae_central_")
    wanted |= dashboard_series("process_")
    # rae_alarm_*: registered by an alarm connector (rae_edge.metrics.register) when present
    missing = {n for n in wanted - served if not n.startswith("rae_alarm_")}
    assert missing == set(), missing
    assert len(wanted) >= 15
