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
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

from bench.common import Row, main_for, percentiles, row
from bench.nodeproc import NodeProcess, cpu_seconds, make_token, peak_rss_mib, rss_mib

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
    sent: dict[str, int] = {"scan": 0, "search": 0, "ingest": 0}
    why: dict[str, int] = {}  # error causes: HTTP status or exception class
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
            except Exception as exc:
                errors["ws"] += 1
                why[f"ws {type(exc).__name__}"] = why.get(f"ws {type(exc).__name__}", 0) + 1

        async def timed(kind: str, coro: Any) -> None:
            t0 = time.perf_counter()
            sent[kind] += 1
            try:
                r = await coro
                if r.status_code >= 400:
                    errors[kind] += 1
                    why[f"{kind} {r.status_code}"] = why.get(f"{kind} {r.status_code}", 0) + 1
                    return
            except httpx.HTTPError as exc:
                errors[kind] += 1
                key = f"{kind} {type(exc).__name__}"
                why[key] = why.get(key, 0) + 1
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

        cpu0 = (cpu_seconds([node.pid]), time.process_time(), time.perf_counter())

        tablets = [asyncio.create_task(tablet(i)) for i in range(TABLETS)]
        await asyncio.sleep(2)  # let the fleet connect
        drivers = [asyncio.create_task(paced("scan", SCANS_PER_S, scan)),
                   asyncio.create_task(paced("search", SEARCHES_PER_S, search)),
                   asyncio.create_task(paced("ingest", INGEST_PER_S, ingest)),
                   asyncio.create_task(sample_rss())]
        await asyncio.sleep(seconds)
        stop.set()
        wall = time.perf_counter() - cpu0[2]
        cpu = {"node": (cpu_seconds([node.pid]) - cpu0[0]) / wall,
               "generator": (time.process_time() - cpu0[1]) / wall}
        await asyncio.gather(*drivers, *tablets, return_exceptions=True)
    return {"lat": lat, "errors": errors, "pushes": pushes, "rss": rss, "sent": sent,
            "why": why, "seconds": seconds, "cpu": cpu}


def run(quick: bool = False, seconds: float | None = None) -> list[Row]:
    """``seconds`` of load (default 300, 20 with ``quick``); ``python -m bench`` runs a
    shorter default inside its full sweep and the full 5 minutes when asked by name."""
    seconds = seconds or (20.0 if quick else 300.0)
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
    offered = {"scan": SCANS_PER_S, "search": SEARCHES_PER_S, "ingest": INGEST_PER_S}
    for kind, rate in offered.items():  # the same figures every run, nan when none came
        samples = res["lat"][kind]
        pct = percentiles(samples) if samples else {"p50": float("nan"), "p99": float("nan")}
        sent_rate = res["sent"][kind] / seconds
        starved = sent_rate < 0.95 * rate
        rows.append(row(f"{kind} requests sent per second", sent_rate, "req/s",
                        target=f">= {rate} (offered)", ok=not starved,
                        notes="the load generator fell behind its schedule (it shares the "
                              "cores with the node)" if starved else ""))
        rows.append(row(f"{kind} p50", pct["p50"], "ms", notes=f"{len(samples)} answered"))
        rows.append(row(f"{kind} p99", pct["p99"], "ms", target="reported",
                        ok=bool(samples) or None))
    total_err = sum(res["errors"].values())
    rows.append(row("errors (all kinds, incl. websocket)", total_err, "count", target="0",
                    ok=total_err == 0,
                    notes=json.dumps(res["errors"]) + " causes " + json.dumps(res["why"])))
    rows.append(row("push messages received by tablets", res["pushes"], "count"))
    rows.append(row("node CPU during load", res["cpu"]["node"], "cores",
                    notes=f"load generator (this process) {res['cpu']['generator']:.2f} cores; "
                          f"{os.cpu_count()} cores in all, shared with whatever else runs"))
    rss_vals = [v for _, v in res["rss"]]
    rows.append(row("node RSS max during load", max(rss_vals) if rss_vals else float("nan"),
                    "MiB", notes="samples (s, MiB): " + json.dumps(res["rss"][:120])))
    rows.append(row("node peak RSS (VmHWM)", peak, "MiB"))
    rows.append(row("load duration", seconds, "s",
                    notes=f"{TABLETS} tablets on /push, {SCANS_PER_S} scans/s, "
                          f"{SEARCHES_PER_S} searches/s, {INGEST_PER_S} incidents/s ingested; "
                          "open loop"))
    return rows


if __name__ == "__main__":
    main_for(run, "load")
