"""Shared benchmark plumbing: percentile maths, the table printer, the JSON writer and a
disk cache of real embeddings for benchmarks that measure quality, not speed."""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DIM_FALLBACK = 384  # the shape of an empty batch
Row = dict[str, Any]


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=float)
    return {f"p{p}": float(np.percentile(a, p)) for p in (50, 95, 99)}


def row(figure: str, value: float, unit: str, *, target: str | None = None,
        baseline: str | None = None, baseline_value: float | None = None,
        ok: bool | None = None, notes: str = "", higher_is_better: bool = False) -> Row:
    """One figure. ``ratio`` is value/baseline (or baseline/value when lower is better)."""
    ratio = None
    if baseline_value:
        ratio = value / baseline_value if higher_is_better else baseline_value / value \
            if value else None
    return {"figure": figure, "value": float(value), "unit": unit, "target": target,
            "baseline": baseline, "baseline_value": baseline_value,
            "ratio": None if ratio is None else round(float(ratio), 3), "ok": ok, "notes": notes}


def print_table(name: str, rows: Sequence[Row]) -> None:
    print(f"\n== {name} ==")
    hdr = f"{'figure':48} {'value':>12} {'unit':8} {'target':>14} {'baseline':>22} {'ratio':>7} ok"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        base = ""
        if r.get("baseline") is not None:
            bv = r.get("baseline_value")
            base = f"{r['baseline']}={bv:.4g}" if bv is not None else str(r["baseline"])
        ok = {True: "yes", False: "NO", None: ""}[r.get("ok")]
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:.2f}"
        print(f"{r['figure'][:48]:48} {r['value']:12.4g} {r['unit'][:8]:8} "
              f"{(r.get('target') or '')[:14]:>14} {base[:22]:>22} {ratio:>7} {ok}")
        if r.get("notes"):
            print(f"    {r['notes']}")


def write_json(name: str, rows: Sequence[Row], out: Path | None = None,
               seconds: float | None = None) -> Path:
    out = out or RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "machine": {"cpus": __import__("os").cpu_count(),
                                          "python": platform.python_version(),
                                          "platform": platform.platform()},
           "seconds": seconds, "rows": list(rows)}
    out.write_text(json.dumps(doc, indent=2))
    return out


def main_for(run: Callable[..., list[Row]], name: str | None = None) -> None:
    """``__main__`` of a bench module: ``--quick`` for small sizes, ``--out FILE``."""
    mod = name or Path(sys.argv[0]).stem.removeprefix("bench_")
    p = argparse.ArgumentParser(description=f"benchmark {mod}")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    t0 = time.perf_counter()
    rows = run(quick=args.quick)
    secs = time.perf_counter() - t0
    print_table(mod, rows)
    print(f"\nwrote {write_json(mod, rows, args.out, secs)} ({secs:.1f} s)")


CACHE = Path(__file__).resolve().parent / ".cache"  # git-ignored; safe to delete


@contextmanager
def embedding_cache(name: str) -> Iterator[None]:
    """Within the block, the process's embedding model answers texts it embedded for the
    same benchmark in an earlier run from ``bench/.cache`` (keyed by the model's tag and
    the text's sha256), and embeds only the others. For benchmarks that measure what the
    vectors do (search quality), not how fast they are made: the vectors are the model's
    own, so the figures are the same, minutes sooner."""
    from rae_edge.config import EmbeddingSettings
    from rae_edge.embedding import _model

    model = _model(EmbeddingSettings())
    tag = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in model.tag)
    path = CACHE / f"embeddings-{name}-{tag}.npz"
    known: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as z:
            known = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
    before = len(known)
    original = model.embed

    def embed(texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True)
                          if k not in known}.items())
        if missing:
            vecs = original([t for _, t in missing], batch_size=batch_size)
            known.update({k: v for (k, _), v in zip(missing, vecs, strict=True)})
        if not keys:
            return np.zeros((0, DIM_FALLBACK), dtype=np.float32)
        return np.stack([known[k] for k in keys]).astype(np.float32, copy=False)

    model.embed = embed  # type: ignore[method-assign]
    try:
        yield
    finally:
        del model.embed  # back to the class's method
        if len(known) > before:
            CACHE.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
            tmp.replace(path)
