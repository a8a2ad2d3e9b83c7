"""Disaster recovery and installation figures.

1. Restore of a node holding 100k memories (5k with ``--quick``) onto an empty data folder,
   until the restored node answers the same reads as before the backup: per machine its
   incidents (DuckDB, newest first), the nearest memories to a query vector (LanceDB with
   the machine prefilter, through the ANN index the node builds at this size) and a
   full-text query. Target ≤ 5 min (the seed's recovery target is 15 min). Baseline: a
   plain ``cp -a`` of the same data folder (no checksums, nothing opened).
2. Bundle install on a clean prefix with the network cut (``unshare -n``, ``pip
   --no-index``) until the node answers its health check. Target ≤ 2 min. Bundle size.

How the 100k memories are made (deterministic, seed 7): 256 real maintenance problem lines
(``../shared/data/maintnet``; built-in sentences when absent) are embedded with the
packaged all-MiniLM-L6-v2; memory *i* takes sentence ``i % 256`` with its record number,
and that sentence's real vector plus Gaussian noise (sigma 0.02 per dimension, about 0.4 in
norm), L2-normalised again: realistic clusters of near-duplicates, as a plant's
repetitive logs make. Each memory is also an incident row in DuckDB (machine ``M{i%200}``).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.common import Row, main_for, row
from rae_edge import backup as bk
from rae_edge import config
from rae_edge.node import EdgeNode
from rae_sync.domain import Incident

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "maintnet" / "aircraft_problem_action.csv"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
MACHINES = 200


def _sentences(n: int = 256) -> tuple[list[str], str]:
    if SHARED.exists():
        with SHARED.open(encoding="utf-8-sig") as f:
            seen: dict[str, None] = {}
            for r in csv.DictReader(f):
                p = (r.get("PROBLEM") or "").strip()
                if p:
                    seen.setdefault(p.lower(), None)
                if len(seen) >= n:
                    break
        return list(seen)[:n], "maintnet problem lines"
    base = ["hydraulic pressure drops under load", "conveyor belt slips at the drive drum",
            "spindle overheats after two hours", "E404 sensor fault on the infeed",
            "servo drive trips on overcurrent", "coolant leak at the pump seal",
            "vacuum gripper loses parts", "press cycle stops with door interlock alarm"]
    return [f"{base[i % len(base)]} variant {i // len(base)}" for i in range(n)], "built-in"


def make_node(data_dir: Path, n: int) -> tuple[EdgeNode, np.ndarray, str]:
    from rae_edge.embedding import get_embedder

    texts, source = _sentences()
    base = get_embedder().embed(texts).astype(np.float32)
    rng = np.random.default_rng(7)
    node = EdgeNode(config.load(None, data_dir=data_dir, node={"tenant_id": "acme"}))
    incs = [Incident(tenant_id="acme", machine_id=f"M{i % MACHINES}",
                     occurred_at=T0 + timedelta(minutes=7 * i), error_code=f"E{i % 97}",
                     symptom=f"{texts[i % len(texts)]} (record {i})",
                     action=f"fixed per work order {i}", source="bench")
            for i in range(n)]
    cols = ["tenant_id", "id", "machine_id", "occurred_at", "error_code", "symptom", "action",
            "source", "content_hash"]
    tbl = pa.Table.from_pylist([{c: getattr(x, c) for c in cols} for x in incs])
    with node.duck.transaction() as cur:
        cur.register("bench_incidents", tbl)
        cur.execute(f"INSERT INTO incidents ({', '.join(cols)}) "
                    f"SELECT {', '.join(cols)} FROM bench_incidents")
        cur.unregister("bench_incidents")
    for start in range(0, n, 10_000):
        chunk = incs[start:start + 10_000]
        idx = np.arange(start, start + len(chunk))
        vecs = base[idx % len(texts)] + rng.normal(0, 0.02, (len(chunk), base.shape[1]))
        vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
        node.lance.add([dict(id=x.id, tenant_id="acme", kind="incident",
                             machine_id=x.machine_id, text=x.symptom, search_text=x.symptom,
                             vector=v.tolist(), occurred_at=x.occurred_at,
                             error_codes=[x.error_code], source="bench")
                        for x, v in zip(chunk, vecs, strict=True)])
    node.lance.refresh_indexes()
    return node, base, source


def reads(node: EdgeNode, base: np.ndarray) -> list[Any]:
    """The reads a briefing is made of, for 20 machines."""
    out: list[Any] = []
    for m in range(0, MACHINES, MACHINES // 20):
        mid = f"M{m}"
        incs = [i.id for i in node.duck.incidents_for_machine("acme", mid, limit=20)]
        where = f"tenant_id = 'acme' AND machine_id = '{mid}'"
        near = [(h["id"], round(float(h["_distance"]), 5)) for h in
                node.lance.vector_search(base[m % len(base)].tolist(), where, 10, ["id"])]
        text = [h["id"] for h in node.lance.text_search("pressure leak", where, 10, ["id"])]
        out.append((mid, incs, near, text))
    return out


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def restore_rows(n: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-restore-") as tmp:
        t = Path(tmp)
        t0 = time.perf_counter()
        node, base, source = make_node(t / "node", n)
        made = time.perf_counter() - t0
        want = reads(node, base)
        t0 = time.perf_counter()
        manifest = bk.backup_node(node, t / "backup")
        backup_s = time.perf_counter() - t0
        node.close()
        t0 = time.perf_counter()
        subprocess.run(["cp", "-a", str(t / "node"), str(t / "raw-copy")], check=True)
        cp_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        bk.restore(t / "backup", t / "restored")
        again = EdgeNode(config.load(None, data_dir=t / "restored", node={"tenant_id": "acme"}))
        got = reads(again, base)
        restore_s = time.perf_counter() - t0
        memories = again.lance.count()
        again.close()
        same = got == want
        size = _du(t / "backup") / 2**20
    note = (f"{memories} memories + {n} incidents; vectors: {source} embedded with the packaged "
            f"MiniLM + N(0, 0.02) noise; data made in {made:.0f} s; "
            f"restored node answers the same reads: {same}")
    return [
        row(f"restore {n // 1000}k memories to same answers", restore_s, "s",
            target="<= 300 s", baseline="cp -a of the data dir", baseline_value=cp_s,
            ok=restore_s <= 300 and same, notes=note),
        row(f"live backup of {n // 1000}k memories", backup_s, "s", target=None,
            notes=f"{size:.0f} MiB, {len(manifest['files'])} files with sha256"),
    ]


def install_rows() -> list[Row]:
    from rae_image import bundle

    py = getattr(sys, "_base_executable", None) or "python3"
    offline = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "offline"]
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        offline = []
    with tempfile.TemporaryDirectory(prefix="bench-install-") as tmp:
        t = Path(tmp)
        t0 = time.perf_counter()
        b = bundle.build(t / "out", "9.9.9")
        build_s = time.perf_counter() - t0
        size = _du(b) / 2**20
        tar = b.with_name(b.name + ".tar").stat().st_size / 2**20
        t0 = time.perf_counter()
        r = subprocess.run([*offline, py, str(b / "install.py"), "--root", str(t / "root")],
                           capture_output=True, text=True)
        install_s = time.perf_counter() - t0
        ok = r.returncode == 0 and "is live" in r.stdout
        aarch = json.loads((b / "manifest.json").read_text())["aarch64"]
    net = "network cut (unshare -n)" if offline else "pip --no-index only (no unshare)"
    return [
        row("bundle install to a healthy node", install_s, "s", target="<= 120 s",
            ok=ok and install_s <= 120,
            notes=f"{net}; fresh venv, models verified, migrations, health check"
                  + ("" if ok else f"; FAILED: {r.stderr[-300:]}")),
        row("bundle size", size, "MiB", notes=f"tar {tar:.0f} MiB; aarch64 pins without a "
            f"wheel: {[m['name'] for m in aarch.get('missing', [])]}"),
        row("bundle build (download cache warm)", build_s, "s"),
    ]


def run(quick: bool = False) -> list[Row]:
    return [*restore_rows(5_000 if quick else 100_000), *install_rows()]


if __name__ == "__main__":
    main_for(run)
