"""Push latency: from the moment an incident is sent to the node (``POST /api/v1/incidents``)
until every tablet watching that machine has the ``incident`` message on its WebSocket
(with the most similar past incident and its fix), on a real ``rae-edge serve`` process
holding 20k memories (3k when ``--quick``; built as in ``bench_briefing``).

Ten tablets watch the machine; each incident is one POST. The baseline beside it is the
HTTP answer of that same POST (the node pushes first, then indexes, so the tablets usually
hear before the poster gets its answer).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import Row, main_for, percentiles, row

TABLETS = 10
MACHINE = "M0001"


async def _measure(url: str, sup: str, tech: str, n: int,
                   first: int = 0) -> tuple[list[float], list[float], int]:
    import httpx
    import websockets

    from rae_sync.domain import Incident

    arrivals: dict[str, list[float]] = {}
    ws_url = url.replace("http://", "ws://") + f"/api/v1/push?machine_id={MACHINE}&token={tech}"
    sockets = [await websockets.connect(ws_url, open_timeout=30) for _ in range(TABLETS)]
    for ws in sockets:
        assert json.loads(await ws.recv())["type"] == "hello"
    with_similar = 0

    async def reader(ws: Any) -> None:
        nonlocal with_similar
        async for raw in ws:
            t = time.perf_counter()
            msg = json.loads(raw)
            if msg.get("type") == "incident":
                arrivals.setdefault(msg["data"]["incident"]["id"], []).append(t)
                if msg["data"].get("similar"):
                    with_similar += 1

    readers = [asyncio.create_task(reader(ws)) for ws in sockets]
    push_ms: list[float] = []
    http_ms: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 headers={"Authorization": f"Bearer {sup}"}) as client:
        for i in range(first, first + n):  # new content each time: duplicates are not pushed
            when = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=i)
            body = {"machine_id": MACHINE, "occurred_at": when.isoformat(), "error_code": "E101",
                    "symptom": f"Hydraulic pressure drops under load, run {i}",
                    "action": "Replaced the relief valve seal"}
            iid = Incident(tenant_id="demo", **body).id
            t0 = time.perf_counter()
            r = await client.post("/api/v1/incidents", json=[body])
            http_ms.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            deadline = time.perf_counter() + 10
            while len(arrivals.get(iid, [])) < TABLETS and time.perf_counter() < deadline:
                await asyncio.sleep(0.002)
            got = arrivals.get(iid, [])
            if len(got) < TABLETS:
                raise RuntimeError(f"only {len(got)} of {TABLETS} tablets got incident {iid}")
            push_ms.append((max(got) - t0) * 1000)  # the last tablet to hear
            await asyncio.sleep(0.05)
    for t in readers:
        t.cancel()
    for ws in sockets:
        await ws.close()
    return push_ms, http_ms, with_similar


def run(quick: bool = False) -> list[Row]:
    from bench.bench_briefing import build
    from bench.nodeproc import NodeProcess, make_token

    n_mem = 3_000 if quick else 20_000
    n = 20 if quick else 60
    tmp = Path(tempfile.mkdtemp(prefix="bench-push-"))
    try:
        build(tmp / "node", n_mem, 400 if quick else 1000)
        sup = make_token(tmp / "node", "supervisor")
        tech = make_token(tmp / "node", "technician")
        node = NodeProcess(tmp / "node").start()
        try:
            asyncio.run(_measure(node.url, sup, tech, 3))  # warm-up (model load, JIT paths)
            push_ms, http_ms, similar = asyncio.run(_measure(node.url, sup, tech, n, 100))
        finally:
            node.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    p, h = percentiles(push_ms), percentiles(http_ms)
    return [
        row(f"push delivered after ingest, p95 ({TABLETS} tablets)", p["p95"], "ms",
            target="<= 100 ms", baseline="HTTP answer of the POST", baseline_value=h["p95"],
            ok=p["p95"] <= 100,
            notes=f"p50 {p['p50']:.1f} ms, p99 {p['p99']:.1f} ms (the last of {TABLETS} "
                  f"tablets); {n} incidents on a node with {n_mem} memories; "
                  f"{similar}/{n * TABLETS} messages carried a similar past incident"),
        row("push delivered after ingest, p50", p["p50"], "ms",
            notes=f"POST answered at p50 {h['p50']:.1f} ms (it indexes after pushing)"),
    ]


if __name__ == "__main__":
    main_for(run)
