"""Load test of the tablet API from a separate process on loopback.

A real node runs in its own process; this process is the fleet of tablets: 200 WebSocket
connections on ``/push`` (each watching one machine), 50 scans/s (briefings), 5 searches/s
and a steady ingest of new incidents (10/s through ``POST /incidents``), open-loop (requests
start on schedule whether or not earlier ones finished, so a slow node shows as latency,
not as a politely reduced rate). Reports p50/p99 per request kind, errors (target 0), push
messages received, and the node's RSS over time. 5 minutes by default, 20 s with --quick.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

from bench.common import Row, main_for, percentiles, row
from bench.nodeproc import NodeProcess, make_token, peak_rss_mib, rss_mib

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
N_MACHINES = 100
TABLETS = 200
SCANS_PER_S = 50
SEARCHES_PER_S = 5
INGEST_PER_S = 10


def _texts() -> list[tuple[str, str]]:
    """(problem, action) pairs: the real MaintNet log when present, else a small built-in set."""
    path = SHARED / "maintnet" / "aircraft_problem_action.csv"
    if path.exists():
        import csv

        with path.open(encoding="utf-8-sig") as f:
            rows = [(r["PROBLEM"].strip(), r["ACTION"].strip()) for r in csv.DictReader(f)]
        return [r for r in rows if r[0] and r[1]]
    base = [("HYD PRESS LOW ON START", "REPLACED HYD PUMP SEAL"),
            ("E404 SENSOR X FAULT", "RESEATED SENSOR X CONNECTOR"),
            ("L/H BUCKET CYL LEAKING", "R&R BUCKET CYL SEALS"),
            ("CONVEYOR BELT SLIPPING", "ADJUSTED BELT TENSION")]
    return [(f"{p} #{i}", a) for i in range(500) for p, a in base]


async def _setup(client: httpx.AsyncClient, rng: random.Random,
                 pairs: list[tuple[str, str]]) -> None:
    machines = [{"id": f"M{i:03d}", "name": f"Machine {i}", "qr_code": f"QR-M{i:03d}",
                 "site": "plant-1", "line": f"L{i % 5}"} for i in range(N_MACHINES)]
    r = await client.post("/api/v1/machines", json=machines)
    r.raise_for_status()
    batch: list[dict[str, Any]] = []
    for i, (p, a) in enumerate(pairs[:3000]):
        batch.append({"machine_id": f"M{rng.randrange(N_MACHINES):03d}",
                      "occurred_at": f"2026-0{1 + i % 9}-{1 + i % 28:02d}T08:00:00Z",
                      "symptom": p, "action": a, "source": "bench"})
        if len(batch) == 500:
            (await client.post("/api/v1/incidents", json=batch, timeout=600)).raise_for_status()
            batch = []
    if batch:
        (await client.post("/api/v1/incidents", json=batch, timeout=600)).raise_for_status()


async def _load(node: NodeProcess, token: str, seconds: float,
                pairs: list[tuple[str, str]]) -> dict[str, Any]:
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {token}"}
    lat: dict[str, list[float]] = {"scan": [], "search": [], "ingest": []}
    errors: dict[str, int] = {"scan": 0, "search": 0, "ingest": 0, "ws": 0}
    pushes = 0
    rss: list[tuple[float, float]] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=node.url, headers=headers, timeout=30,
                                 limits=limits) as client:
        await _setup(client, rng, pairs)

        async def tablet(i: int) -> None:
            nonlocal pushes
            ws_url = (node.url.replace("http", "ws") + f"/api/v1/push?machine_id=M"
                      f"{i % N_MACHINES:03d}&token={token}")
            try:
                async with websockets.connect(ws_url, open_timeout=30) as ws:
                    while not stop.is_set():
                        try:
                            await asyncio.wait_for(ws.recv(), timeout=1.0)
                            pushes += 1
                        except TimeoutError:
                            continue
            except Exception:
                errors["ws"] += 1

        async def timed(kind: str, coro: Any) -> None:
            t0 = time.perf_counter()
            try:
                r = await coro
                if r.status_code >= 400:
                    errors[kind] += 1
                    return
            except httpx.HTTPError:
                errors[kind] += 1
                return
            lat[kind].append((time.perf_counter() - t0) * 1000)

        def scan() -> Any:
            return client.get(f"/api/v1/machines/QR-M{rng.randrange(N_MACHINES):03d}/briefing")

        def search() -> Any:
            q = rng.choice(pairs)[0]
            return client.get("/api/v1/search", params={"q": q, "k": 10})

        def ingest() -> Any:
            p, a = rng.choice(pairs)
            return client.post("/api/v1/incidents", json=[{
                "machine_id": f"M{rng.randrange(N_MACHINES):03d}",
                "occurred_at": "2026-11-20T10:00:00Z", "symptom": f"{p} (load {time.time()})",
                "action": a, "source": "bench-load"}])

        async def paced(kind: str, per_s: float, make: Any) -> None:
            tasks: set[asyncio.Task[None]] = set()
            start = time.perf_counter()
            n = 0
            while not stop.is_set():
                due = start + n / per_s
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                t = asyncio.create_task(timed(kind, make()))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                n += 1
            await asyncio.gather(*tasks, return_exceptions=True)

        async def sample_rss() -> None:
            t0 = time.perf_counter()
            while not stop.is_set():
                rss.append((round(time.perf_counter() - t0, 1), rss_mib(node.pid)))
                await asyncio.sleep(5)

        tablets = [asyncio.create_task(tablet(i)) for i in range(TABLETS)]
        await asyncio.sleep(2)  # let the fleet connect
        drivers = [asyncio.create_task(paced("scan", SCANS_PER_S, scan)),
                   asyncio.create_task(paced("search", SEARCHES_PER_S, search)),
                   asyncio.create_task(paced("ingest", INGEST_PER_S, ingest)),
                   asyncio.create_task(sample_rss())]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*drivers, *tablets, return_exceptions=True)
    return {"lat": lat, "errors": errors, "pushes": pushes, "rss": rss}


def run(quick: bool = False) -> list[Row]:
    seconds = 20.0 if quick else 300.0
    pairs = _texts()
    with tempfile.TemporaryDirectory(prefix="rae-load-") as tmp:
        data = Path(tmp) / "node"
        token = make_token(data)
        node = NodeProcess(data).start()
        try:
            res = asyncio.run(_load(node, token, seconds, pairs))
            peak = peak_rss_mib(node.pid)
        finally:
            node.stop()
    rows: list[Row] = []
    for kind, target in (("scan", "p99 reported"), ("search", "p99 reported"),
                         ("ingest", "p99 reported")):
        samples = res["lat"][kind]
        if not samples:
            rows.append(row(f"{kind}: no successful request", float("nan"), "ms", ok=False))
            continue
        pct = percentiles(samples)
        rows.append(row(f"{kind} p50 ({len(samples)} ok)", pct["p50"], "ms"))
        rows.append(row(f"{kind} p99", pct["p99"], "ms", target=target))
    total_err = sum(res["errors"].values())
    rows.append(row("errors (all kinds, incl. websocket)", total_err, "count", target="0",
                    ok=total_err == 0, notes=json.dumps(res["errors"])))
    rows.append(row("push messages received by tablets", res["pushes"], "count"))
    rss_vals = [v for _, v in res["rss"]]
    rows.append(row("node RSS max during load", max(rss_vals) if rss_vals else float("nan"),
                    "MiB", notes="samples (s, MiB): " + json.dumps(res["rss"][:60])))
    rows.append(row("node peak RSS (VmHWM)", peak, "MiB"))
    rows.append(row("load duration", seconds, "s",
                    notes=f"{TABLETS} tablets on /push, {SCANS_PER_S} scans/s, "
                          f"{SEARCHES_PER_S} searches/s, {INGEST_PER_S} incidents/s ingested; "
                          "open loop"))
    return rows


if __name__ == "__main__":
    main_for(run, "load")
