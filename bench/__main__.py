"""``python -m bench [NAME ...] [--quick] [--out FILE]``: runs every benchmark module
(``bench/bench_*.py``) or the named ones, prints one table per benchmark and writes all
rows to one JSON file (default ``bench/results/all.json``).

A benchmark that fails is reported as a row with ``ok: false`` and its error; the others
still run, so one broken figure never hides the rest.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from bench.common import RESULTS, Row, print_table, write_json

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {available()}")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--out", type=Path, default=RESULTS / "all.json")
    args = p.parse_args(argv)
    names = args.names or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; available: {available()}")
    report: dict[str, dict[str, object]] = {}
    failed = 0
    t_all = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"bench.bench_{name}")
            rows: list[Row] = mod.run(quick=args.quick)
        except Exception as exc:  # a broken benchmark is a finding, not a crash
            traceback.print_exc()
            rows = [{"figure": f"{name} failed", "value": float("nan"), "unit": "",
                     "target": None, "baseline": None, "baseline_value": None,
                     "ratio": None, "ok": False, "notes": f"{type(exc).__name__}: {exc}"}]
            failed += 1
        secs = time.perf_counter() - t0
        print_table(name, rows)
        write_json(name, rows, seconds=secs)
        report[name] = {"seconds": round(secs, 1), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"quick": args.quick,
                                    "seconds": round(time.perf_counter() - t_all, 1),
                                    "benchmarks": report}, indent=2, default=str))
    print(f"\nwrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
