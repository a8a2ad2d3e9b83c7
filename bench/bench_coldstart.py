"""Node cold start and memory: how long ``rae-edge serve`` takes from process start to its
first ``/health`` 200, then to its first answered search (the embedder loaded), and the
node's resident memory after that and at its peak (VmHWM), on a fresh data folder and
again on the same folder (the restart a plant sees after a power cut).

Memories: 500 real MaintNet problem/action lines (``../shared/data``; a small built-in
set when absent), so the search touches a real index. Target: peak RSS ≤ 600 MiB.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx

from bench.bench_load import _texts
from bench.common import Row, main_for, row
from bench.nodeproc import NodeProcess, make_token, peak_rss_mib, rss_mib

N_LINES = 500


def _start(data: Path, token: str) -> dict[str, float]:
    t0 = time.perf_counter()
    node = NodeProcess(data).start()
    try:
        health = time.perf_counter() - t0
        headers = {"Authorization": f"Bearer {token}"}
        r = httpx.get(f"{node.url}/api/v1/search", params={"q": "hydraulic leak", "k": 10},
                      headers=headers, timeout=300)
        r.raise_for_status()
        first = time.perf_counter() - t0
        return {"health": health, "first_search": first, "rss": rss_mib(node.pid),
                "peak": peak_rss_mib(node.pid)}
    finally:
        node.stop()


def run(quick: bool = False) -> list[Row]:
    pairs = _texts()[: 100 if quick else N_LINES]
    with tempfile.TemporaryDirectory(prefix="rae-cold-") as tmp:
        data = Path(tmp) / "node"
        token = make_token(data)
        fresh = _start(data, token)
        node = NodeProcess(data).start()  # fill it, then measure the restart
        try:
            headers = {"Authorization": f"Bearer {token}"}
            httpx.post(f"{node.url}/api/v1/machines", headers=headers, timeout=60, json=[
                {"id": "M001", "name": "Machine 1", "qr_code": "QR-M001", "site": "plant-1"}],
            ).raise_for_status()
            httpx.post(f"{node.url}/api/v1/incidents", headers=headers, timeout=600, json=[
                {"machine_id": "M001", "occurred_at": "2026-01-05T08:00:00Z", "symptom": p,
                 "action": a, "source": "bench"} for p, a in pairs]).raise_for_status()
        finally:
            node.stop()
        again = _start(data, token)
    return [
        row("cold start to /health, fresh data folder", fresh["health"], "s"),
        row("cold start to first search answered, fresh", fresh["first_search"], "s",
            notes="includes loading the ONNX embedder"),
        row("restart to /health, filled data folder", again["health"], "s",
            notes=f"{len(pairs)} memories"),
        row("restart to first search answered, filled", again["first_search"], "s"),
        row("node RSS after first search", again["rss"], "MiB"),
        row("node peak RSS (VmHWM)", max(fresh["peak"], again["peak"]), "MiB",
            target="<= 600 MiB", ok=max(fresh["peak"], again["peak"]) <= 600),
    ]


if __name__ == "__main__":
    main_for(run, "coldstart")
