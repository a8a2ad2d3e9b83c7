"""Bulk ``POST /api/v1/incidents`` through HTTP against raw onnxruntime on the same texts.

A real ``rae-edge serve`` in its own process (:mod:`bench.nodeproc`), this process the
client. Two stores: an empty one (the 1,000 machines only) and one holding ``--stored``
memories (100,000 by default; :func:`bench.bench_briefing.build` writes them in bulk,
indexes included). Into each, ``--incidents`` new incidents (distinct real maintenance
lines: symptom + action, 60 % with an error code, over the 1,000 machines) are posted
in batches of ``--batch`` per request, one request after the other. The figure is
incidents per second end to end: each answer means every incident of its request is
stored on disk (DuckDB, with its outbox message), embedded and appended to LanceDB
(searchable), its fields extracted, the first pushes made.

The baseline is raw onnxruntime (``bench.bench_ingest._RawOrt``: batches of 32 in input
order, padded to each batch's longest) embedding the same incident texts, as the node
embeds them (code, symptom, action, abbreviations expanded), in this process while the
node idles: each request's texts just before the request, so both see the same load on
a shared machine. Ratio = end to end / raw (target >= 0.85). The node's embedder sorts
a request's texts by length before batching, so it pads less than the raw loop and on
texts of mixed length the ratio can pass 1; the notes give the ratio to raw onnxruntime
on the same batches sorted by length too (the node's overhead beyond the model).

``.venv/bin/python -m bench.bench_bulk_incidents [--quick] [--stored N] [--incidents N]
[--batch N] [--no-empty] [--profile DIR]`` (``--profile``: py-spy records the node during the posts,
raw flat files in DIR; ``--quick``: 10,000 stored, 1,000 incidents).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import Row, print_table, row, write_json

N_MACHINES = 1000
TENANT = "demo"
PY_SPY = Path("/work/main/.venv/bin/py-spy")


def incidents(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` distinct incidents from real maintenance lines (deterministic)."""
    import random

    from bench.bench_briefing import real_lines

    lines = real_lines(4000)
    rng = random.Random(seed)
    base = datetime(2026, 6, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        code = f"E{rng.randrange(100, 150)}" if rng.random() < 0.6 else None
        out.append({"machine_id": f"M{rng.randrange(N_MACHINES):04d}",
                    "occurred_at": (base + timedelta(minutes=i)).isoformat(),
                    "error_code": code, "symptom": rng.choice(lines),
                    "action": rng.choice(lines), "source": "bench-bulk"})
    return out


def node_texts(data_dir: Path, items: list[dict[str, Any]]) -> list[str]:
    """The texts the node embeds for these incidents (its ``search_text``)."""
    from rae_edge import config
    from rae_edge.abbreviations import abbreviations_for
    from rae_edge.memory.fields import incident_text
    from rae_sync.domain import Incident

    expand = abbreviations_for(config.load(None, data_dir=data_dir).abbreviations).expand
    return [expand(incident_text(Incident(tenant_id=TENANT, **d))) for d in items]


def empty_store(data_dir: Path) -> None:
    from rae_edge import config
    from rae_edge.node import EdgeNode
    from rae_sync.domain import Machine

    node = EdgeNode(config.load(None, data_dir=data_dir))
    node.duck.upsert_machines([Machine(tenant_id=TENANT, id=f"M{m:04d}", name=f"Machine {m}",
                                       qr_code=f"QR-M{m:04d}", site="plant-1")
                               for m in range(N_MACHINES)])
    node.close()


def _raw_rate(texts: list[str]) -> float:
    from bench.bench_ingest import BATCH, _raw

    t = time.perf_counter()
    _raw().embed(texts, BATCH)
    return len(texts) / (time.perf_counter() - t)


def _post_all(url: str, token: str, items: list[dict[str, Any]], texts: list[str],
              batch: int) -> tuple[list[float], list[float], list[float], int]:
    """Posts the batches one after the other; before each, raw onnxruntime embeds the
    same batch's texts here while the node idles (paired rounds: a shared machine's load
    swings alike for both), in input order and sorted by length. Returns (request
    seconds, raw seconds, raw sorted seconds, incidents added)."""
    import httpx

    from bench.bench_ingest import BATCH, _raw

    lat: list[float] = []
    raw: list[float] = []
    raw_sorted: list[float] = []
    added = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=600) as client:
        for s in range(0, len(items), batch):
            t = time.perf_counter()
            _raw().embed(texts[s:s + batch], BATCH)
            raw.append(time.perf_counter() - t)
            t = time.perf_counter()
            _raw().embed(sorted(texts[s:s + batch], key=len), BATCH)
            raw_sorted.append(time.perf_counter() - t)
            t = time.perf_counter()
            r = client.post("/api/v1/incidents", json=items[s:s + batch])
            lat.append(time.perf_counter() - t)
            r.raise_for_status()
            added += int(r.json()["added"])
    return lat, raw, raw_sorted, added


def measure(label: str, data_dir: Path, items: list[dict[str, Any]], warm: list[dict[str, Any]],
            batch: int, profile: Path | None) -> dict[str, Any]:
    import httpx

    from bench.nodeproc import NodeProcess, make_token

    texts = node_texts(data_dir, items)
    _raw_rate(texts[:64])  # model loaded, first-run costs paid
    token = make_token(data_dir, "supervisor", TENANT)
    node = NodeProcess(data_dir).start()
    spy: subprocess.Popen[bytes] | None = None
    try:
        with httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {token}"},
                          timeout=300) as client:  # model loaded, connections, first write
            client.post("/api/v1/incidents", json=warm).raise_for_status()
        if profile is not None and PY_SPY.exists():
            profile.mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen([str(PY_SPY), "record", "-f", "raw", "--threads",
                                    "--nonblocking", "-r", "50", "-p", str(node.pid), "-o",
                                    str(profile / f"{label}.txt")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        lat, raw, raw_sorted, added = _post_all(node.url, token, items, texts, batch)
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
        with httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {token}"},
                          timeout=60) as client:  # searchable once answered
            hit = client.get("/api/v1/search", params={"q": items[-1]["symptom"],
                                                       "machine_id": items[-1]["machine_id"],
                                                       "k": 10}).json()["hits"]
    finally:
        node.stop()
    return {"label": label, "secs": sum(lat), "rate": len(items) / sum(lat), "added": added,
            "raw": len(items) / sum(raw), "raw_secs": sum(raw),
            "raw_sorted": len(items) / sum(raw_sorted),
            "lat_max": max(lat), "lat_mean": sum(lat) / len(lat), "requests": len(lat),
            "last_found": any(h["kind"] == "incident" for h in hit)}


def run(quick: bool = False, stored: int | None = None, n_incidents: int | None = None,
        batch: int = 500, profile: Path | None = None, with_empty: bool = True) -> list[Row]:
    from bench.bench_briefing import build

    stored = stored if stored is not None else (10_000 if quick else 100_000)
    n = n_incidents or (1000 if quick else 3000)
    items = incidents(n + 20)
    warm, items = items[:20], items[20:]
    tmp = Path(tempfile.mkdtemp(prefix="bench-bulk-"))
    out: list[Row] = []
    try:
        results = []
        if with_empty:
            empty_store(tmp / "empty")
            results.append(measure("empty", tmp / "empty", items, warm, batch, profile))
        t = time.perf_counter()
        built = build(tmp / "full", stored, 800 if quick else 3000)
        build_s = time.perf_counter() - t
        results.append(measure(f"{stored // 1000}k", tmp / "full", items, warm, batch,
                               profile))
        for r in results:
            store = "empty store" if r["label"] == "empty" else f"{stored:,} stored"
            ratio = r["rate"] / r["raw"]
            out.append(row(f"bulk POST /incidents, {store}", r["rate"], "inc/s",
                           target=">= 85% of raw", baseline="raw onnxruntime",
                           baseline_value=r["raw"], ok=ratio >= 0.85, higher_is_better=True,
                           notes=f"{n} incidents in {r['requests']} requests of {batch}, "
                                 f"{r['secs']:.1f} s; request mean {r['lat_mean']:.2f} s, max "
                                 f"{r['lat_max']:.2f} s; added {r['added']}; last one found "
                                 f"by search: {r['last_found']}; raw ORT {r['raw_secs']:.1f} "
                                 "s on the same batches, each just before its request; "
                                 "raw ORT on each batch sorted by length (as the node "
                                 f"batches): {r['raw_sorted']:.1f}/s, ratio "
                                 f"{r['rate'] / r['raw_sorted']:.2f}"))
        out.append(row("setup: stored memories built", build_s, "s",
                       notes=f"{built['rows']} LanceDB rows (incidents, corrections, manual "
                             "sections), DuckDB bulk insert, indexes built"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description="benchmark bulk_incidents")
    p.add_argument("--quick", action="store_true", help="10k stored, 1,000 incidents")
    p.add_argument("--stored", type=int, default=None, help="memories stored (100,000)")
    p.add_argument("--incidents", type=int, default=None, help="incidents posted (3,000)")
    p.add_argument("--batch", type=int, default=500, help="incidents per request")
    p.add_argument("--profile", type=Path, default=None, help="py-spy raw output folder")
    p.add_argument("--no-empty", action="store_true", help="only the store of --stored")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    t0 = time.perf_counter()
    rows = run(a.quick, a.stored, a.incidents, a.batch, a.profile, not a.no_empty)
    secs = time.perf_counter() - t0
    print_table("bulk_incidents", rows)
    print(f"\nwrote {write_json('bulk_incidents', rows, a.out, secs)} ({secs:.1f} s)")


if __name__ == "__main__":
    main()
