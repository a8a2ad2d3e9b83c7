"""kill -9 of a serving node while tablets post incidents: every acknowledged incident is
there after the restart, none twice, and the node comes back by itself."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from bench.nodeproc import NodeProcess, make_token
from rae_edge.store.duck import DuckStore

pytestmark = pytest.mark.faults


def _post_until_dead(url: str, token: str, acked: list[str], stop: threading.Event) -> None:
    h = {"Authorization": f"Bearer {token}"}
    i = 0
    with httpx.Client(base_url=url, headers=h, timeout=10) as c:
        while not stop.is_set():
            body = [{"machine_id": "M1", "occurred_at": "2026-11-20T10:00:00Z",
                     "error_code": "E404", "symptom": f"sensor X fault #{i}",
                     "action": "reseated sensor X"}]
            try:
                r = c.post("/api/v1/incidents", json=body)
            except httpx.HTTPError:
                return  # the node is gone; what was acknowledged is in `acked`
            if r.status_code < 300:
                acked.extend(_ids(r.json()))
            i += 1


def _ids(body: object) -> list[str]:
    if isinstance(body, dict):
        body = body.get("ids") or body.get("incidents") or body.get("added") or []
    out: list[str] = []
    for x in body if isinstance(body, list) else []:
        out.append(x if isinstance(x, str) else str(x.get("id")))
    return out


def test_kill_9_during_ingest_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data = tmp_path / "node"
    token = make_token(data)
    node = NodeProcess(data).start()
    h = {"Authorization": f"Bearer {token}"}
    r = httpx.post(f"{node.url}/api/v1/machines", headers=h, timeout=30,
                   json=[{"id": "M1", "name": "Press 1", "qr_code": "QR-M1", "site": "p1"}])
    assert r.status_code < 300, r.text
    acked: list[str] = []
    stop = threading.Event()
    writers = [threading.Thread(target=_post_until_dead, args=(node.url, token, acked, stop))
               for _ in range(3)]
    for w in writers:
        w.start()
    time.sleep(4)
    node.kill9()
    stop.set()
    for w in writers:
        w.join(timeout=30)
    assert acked, "no write was acknowledged before the kill"

    node2 = NodeProcess(data, port=node.port).start()  # comes back on the same data
    try:
        r = httpx.get(f"{node2.url}/api/v1/machines/QR-M1/briefing", headers=h, timeout=30)
        assert r.status_code == 200, r.text
        # Re-posting an acknowledged incident after the restart stores nothing new.
        again = httpx.post(f"{node2.url}/api/v1/incidents", headers=h, timeout=30, json=[{
            "machine_id": "M1", "occurred_at": "2026-11-20T10:00:00Z", "error_code": "E404",
            "symptom": "sensor X fault #0", "action": "reseated sensor X"}])
        assert again.status_code < 300
    finally:
        node2.stop()
    store = DuckStore(data / "node.duckdb")
    stored = [str(r[0]) for r in store.query("SELECT id FROM incidents")]
    store.close()
    assert len(stored) == len(set(stored)), "an incident is stored twice"
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged incidents lost"
