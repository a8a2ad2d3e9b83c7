"""Load test of the tablet API from a separate process on loopback.

A real node runs in its own process; this process is the fleet of tablets: 200 WebSocket
connections on ``/push`` (each watching one machine), 50 scans/s (briefings), 5 searches/s
and a steady ingest of new incidents (10/s through ``POST /incidents``), open-loop (requests
start on schedule whether or not earlier ones finished, so a slow node shows as latency,
not as a politely reduced rate). Reports p50/p95/p99 per request kind against the issue's
targets (scan p95 <= 150 ms, search p95 <= 300 ms), errors (target 0), push messages
received, the node's RSS over time (at the end within 10% of after the first minute), and
where the time goes: the node's own ``/metrics`` scraped before and after the load (time
per route, per step of the write path, in the embedding model), so a slow figure points at
its cause. 5 minutes by default, 20 s with --quick.
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
P95_TARGETS = {"scan": 150.0, "search": 300.0}


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
    stores: list[tuple[float, dict[str, float]]] = []  # at the start, after the first minute
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
                at = round(time.perf_counter() - t0, 1)
                rss.append((at, rss_mib(node.pid)))
                if not stores or (at >= 60.0 and len(stores) == 1):
                    stores.append((at, _store_memory(await _scrape(client))))
                await asyncio.sleep(5)

        before = await _scrape(client)
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
        end = await _scrape(client)
        spent = _spent(before, end)
        stores.append((round(wall, 1), _store_memory(end)))
    return {"lat": lat, "errors": errors, "pushes": pushes, "rss": rss, "sent": sent,
            "stores": stores,
            "why": why, "seconds": seconds, "cpu": cpu, "spent": spent}


async def _scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[str, ...]], float]:
    """The node's ``/metrics`` as ``{(sample name, label values): value}``."""
    from prometheus_client.parser import text_string_to_metric_families

    r = await client.get("/metrics")
    r.raise_for_status()
    return {(s.name, tuple(f"{k}={v}" for k, v in sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def _store_memory(scraped: dict[tuple[str, tuple[str, ...]], float]) -> dict[str, float]:
    """MiB held by DuckDB (by use) and LanceDB's caches, from a scrape."""
    out = {f"duckdb {labels[0].split('=', 1)[1]}": v / 2**20
           for (name, labels), v in scraped.items()
           if name == "rae_duckdb_memory_bytes" and v > 0}
    out["lancedb caches"] = scraped.get(("rae_lancedb_cache_bytes", ()), 0.0) / 2**20
    out[RENEWALS] = scraped.get(("rae_lancedb_cache_renewals_total", ()), 0.0)
    return out


RENEWALS = "lancedb cache renewals"  # a count among the MiB of _store_memory


# where the time goes: histogram (name, the label that names a part)
_TIMED = (("rae_http_request_duration_seconds", "HTTP"), ("rae_write_step_seconds", "write"),
          ("rae_embedding_seconds", "embedding model"))


def _spent(before: dict[tuple[str, tuple[str, ...]], float],
           after: dict[tuple[str, tuple[str, ...]], float]) -> list[tuple[str, float, float]]:
    """(part, seconds, count) of every timed part during the load, most time first."""
    out: list[tuple[str, float, float]] = []
    for name, label in _TIMED:
        for (sample, labels), total in after.items():
            if sample != f"{name}_sum":
                continue
            seconds = total - before.get((sample, labels), 0.0)
            count = after.get((f"{name}_count", labels), 0.0) - before.get(
                (f"{name}_count", labels), 0.0)
            if count > 0:
                parts = " ".join(v.split("=", 1)[1] for v in labels)
                out.append((f"{label} {parts}".strip(), seconds, count))
    return sorted(out, key=lambda x: -x[1])


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
        pct = percentiles(samples) if samples else {"p50": float("nan"), "p95": float("nan"),
                                                    "p99": float("nan")}
        sent_rate = res["sent"][kind] / seconds
        starved = sent_rate < 0.95 * rate
        rows.append(row(f"{kind} requests sent per second", sent_rate, "req/s",
                        target=f">= {rate} (offered)", ok=not starved,
                        notes="the load generator fell behind its schedule (it shares the "
                              "cores with the node)" if starved else ""))
        rows.append(row(f"{kind} p50", pct["p50"], "ms", notes=f"{len(samples)} answered"))
        p95_target = P95_TARGETS.get(kind)
        rows.append(row(f"{kind} p95", pct.get("p95", float("nan")), "ms",
                        target=f"<= {p95_target:g} ms" if p95_target else "reported",
                        ok=(pct.get("p95", float("inf")) <= p95_target) if p95_target
                        else bool(samples) or None))
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
    after_minute = [v for t, v in res["rss"] if t >= 60.0]
    if after_minute:  # runs of a minute or more: did memory keep growing after warm-up?
        growth = rss_vals[-1] / after_minute[0] - 1.0
        rows.append(row("node RSS growth after the first minute", growth * 100, "%",
                        target="<= 10 %", ok=growth <= 0.10,
                        notes=f"{after_minute[0]:.0f} MiB at 60 s, {rss_vals[-1]:.0f} MiB at "
                              "the end"))
    if len(res["stores"]) >= 2:  # where a growing RSS sits: the stores' own memory
        _, first = res["stores"][1 if len(res["stores"]) > 2 else 0]
        t_end, last = res["stores"][-1]
        rows.append(row(RENEWALS, last.get(RENEWALS, 0.0), "count",
                        notes="stale index files dropped with the caches holding them"))
        for part in sorted((set(first) | set(last)) - {RENEWALS}):
            rows.append(row(f"memory in {part}", last.get(part, 0.0), "MiB",
                            notes=f"{first.get(part, 0.0):.1f} MiB after the first minute "
                                  f"(or at the start), {t_end:.0f} s: at the end"))
    busy = sum(s for _, s, _ in res["spent"] if s > 0) or 1.0
    for part, secs, count in res["spent"][:12]:
        rows.append(row(f"time in {part}", secs, "s",
                        notes=f"{count:.0f} calls, mean {secs / count * 1000:.1f} ms; "
                              f"{secs / busy * 100:.0f}% of the timed total (parts overlap: "
                              "a request's time includes its write steps)"))
    rows.append(row("load duration", seconds, "s",
                    notes=f"{TABLETS} tablets on /push, {SCANS_PER_S} scans/s, "
                          f"{SEARCHES_PER_S} searches/s, {INGEST_PER_S} incidents/s ingested; "
                          "open loop"))
    return rows


if __name__ == "__main__":
    main_for(run, "load")
