"""Offline tablet → node back: how long a tablet's queue takes to reach the node.

A real node process and a real headless Chromium with the tablet page (its service worker
installed). The node is stopped; the page makes ``n`` corrections (100; 20 with --quick),
each queued in IndexedDB by the service worker. The node is started again on the same port
and data folder; the figure is the time from its first ``/health`` 200 to the tablet's
queue being empty, then each correction is checked stored exactly once (DuckDB, read-only,
after the node stops). Target: 100 corrections in ≤ 10 s.

Baseline, same run and node: the same number of corrections POSTed straight to the node
over HTTP (httpx, each with its own ``Idempotency-Key``), as many at a time as the tablet
sends (:data:`WIDTH`): what the node itself takes, without the browser and its queue. The
tablet used to send its queue one write at a time: 32.1 s for 100 (first measurement).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import httpx

from bench.common import Row, main_for, row
from bench.nodeproc import NodeProcess, make_token

CHROMIUM = Path("/usr/bin/chromium")
MACHINE = {"id": "PRESS-07", "name": "Hydraulic press 7", "qr_code": "QR-PRESS-07",
           "site": "plant-1", "line": "L2"}
QUEUE_JS = """async ([n, tag]) => {
  const auth = 'Bearer ' + localStorage.getItem('rae.token');
  for (let i = 0; i < n; i++) {
    const text = tag + ' note ' + i + ': bracket re-tightened';
    await fetch('/api/v1/corrections', {method: 'POST', headers: {
      'Content-Type': 'application/json', Authorization: auth},
      body: JSON.stringify({machine_id: 'PRESS-07', text})});
  }
  return window.raeOffline.count;
}"""
WIDTH = 6  # REPLAY_WIDTH of the tablet's service worker (web/sw.js)


def _delivered(page: Any, node: NodeProcess, n: int) -> tuple[float, float]:
    """Seconds from the node's restart to the queue empty, and the restart itself."""
    t0 = time.perf_counter()
    node.start()
    up = time.perf_counter()
    page.wait_for_function("() => window.raeOffline.count === 0", timeout=300_000)
    return time.perf_counter() - up, up - t0


def _direct(url: str, token: str, texts: list[str]) -> float:
    """Seconds to POST ``texts`` as corrections straight to the node, WIDTH at a time."""
    with httpx.Client(timeout=60) as client:
        def one(text: str) -> None:
            client.post(f"{url}/api/v1/corrections", json={"machine_id": "PRESS-07", "text": text},
                        headers={"Authorization": f"Bearer {token}",
                                 "Idempotency-Key": str(uuid.uuid4())}).raise_for_status()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(WIDTH) as pool:
            list(pool.map(one, texts))
        return time.perf_counter() - t0


def run(quick: bool = False, n: int | None = None) -> list[Row]:
    n = n or (20 if quick else 100)
    if not CHROMIUM.exists():
        return [row("offline queue delivery", 0, "s", ok=None,
                    notes="skipped: /usr/bin/chromium is not installed")]
    from playwright.sync_api import sync_playwright

    tag = f"bench-{int(time.time())}"
    with tempfile.TemporaryDirectory(prefix="rae-offline-") as tmp:
        data = Path(tmp) / "node"
        admin, tech = make_token(data), make_token(data, role="technician")
        node = NodeProcess(data).start()
        try:
            httpx.post(f"{node.url}/api/v1/machines", json=[MACHINE], timeout=60,
                       headers={"Authorization": f"Bearer {admin}"}).raise_for_status()
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
                page = browser.new_page()
                page.goto(node.url + "/")
                page.fill("#token-input", tech)
                page.click("#form-token button[type=submit]")
                page.wait_for_function("() => navigator.serviceWorker.controller !== null",
                                       timeout=60_000)
                node.stop()
                queued = page.evaluate(QUEUE_JS, [n, tag])
                took, restart = _delivered(page, node, n)
                browser.close()
            direct = _direct(node.url, tech, [f"{tag} direct {i}: bracket re-tightened"
                                              for i in range(n)])
        finally:
            node.stop()
        con = duckdb.connect(str(data / "node.duckdb"), read_only=True)
        texts = [r[0] for r in con.execute(
            "SELECT text FROM corrections WHERE text LIKE ?", [tag + " note %"]).fetchall()]
        direct_stored = con.execute("SELECT count(*) FROM corrections WHERE text LIKE ?",
                                    [tag + " direct %"]).fetchone()
        con.close()
    once = len(texts) == n and len(set(texts)) == n
    return [
        row(f"offline → online: {n} queued corrections delivered", took, "s",
            target="≤ 10 s for 100", ok=(took <= 10.0) if n >= 100 else None,
            baseline=f"direct POST ×{WIDTH}", baseline_value=round(direct, 3),
            notes=f"{queued} queued in IndexedDB while the node was down; timed from the "
                  f"node's first /health 200 (its restart took {restart:.1f} s) to the "
                  f"tablet's queue empty, {WIDTH} in flight; the page asks every 1 s while "
                  f"notes wait. Baseline: {n} corrections POSTed straight to the node, "
                  f"{WIDTH} at a time ({direct_stored and direct_stored[0]} stored); the "
                  "sequential replay took 32.1 s for 100"),
        row("offline → online: corrections stored", len(texts), "count",
            target=f"{n}, each once", ok=once,
            notes=f"{len(set(texts))} distinct of {len(texts)} stored"),
    ]


if __name__ == "__main__":
    main_for(run, "offline")
