"""Shared benchmark plumbing: percentile maths, the table printer and the JSON writer."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
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
