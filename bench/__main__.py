"""``python -m bench [NAME ...] [--quick | --full] [--sizes N,...] [--list] [--dry]``:
runs every benchmark module (``bench/bench_*.py``) or the named ones, prints one table per
benchmark and writes all rows to one JSON file (default ``bench/results/all.json``).

Sizes and time: the default sweep is meant to finish on 2 cores in 20 minutes
(``BUDGET_S``), so inside it a few benchmarks run shorter than when named alone
(``SWEEP_KWARGS``: the load test runs 60 s instead of 5 minutes); ``--full`` runs them at
full length and adds the 1M-memory size; ``--sizes 10000,100000,1000000`` asks for sizes
(passed to every benchmark whose ``run`` takes ``sizes``, and exported as
``RAE_BENCH_SIZES`` for the others to read).

The JSON has the same shape every run: fixed top-level keys, one entry per benchmark
module (``status`` ``ok``, ``failed`` or ``skipped``), rows with the same keys. A
benchmark that fails is reported as a row with ``ok: false`` and its error; the others
still run, so one broken figure never hides the rest. ``--dry`` writes that document
without running anything (its shape is what a test checks); ``--list`` names the modules.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import RESULTS, Row, print_table, write_json

HERE = Path(__file__).resolve().parent
BUDGET_S = 20 * 60
SCHEMA = 1
ROW_KEYS = ("figure", "value", "unit", "target", "baseline", "baseline_value", "ratio", "ok",
            "notes")
# shorter settings inside the default sweep (full length with --full or when named alone)
SWEEP_KWARGS: dict[str, dict[str, Any]] = {"load": {"seconds": 60.0},
                                           "catchup": {"n": 300}}
# benchmarks that take one size from the environment: run once per size
SIZE_ENV = {"briefing": "RAE_BENCH_BRIEFING_N"}
DEFAULT_SIZES = (10_000, 100_000)
FULL_SIZES = (10_000, 100_000, 1_000_000)


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def _summary(name: str) -> str:
    """First line of a module's docstring, read without importing it."""
    text = (HERE / f"bench_{name}.py").read_text(encoding="utf-8")
    try:
        import ast

        doc = ast.get_docstring(ast.parse(text)) or ""
    except SyntaxError:
        doc = ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _normalise(rows: list[Row]) -> list[Row]:
    """Every row with exactly ``ROW_KEYS``, in that order (missing ones as None)."""
    return [{k: r.get(k) for k in ROW_KEYS} for r in rows]


def _load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _kwargs_for(run: Any, name: str, *, sweep: bool, full: bool,
                sizes: tuple[int, ...]) -> dict[str, Any]:
    params = inspect.signature(run).parameters
    kw: dict[str, Any] = {}
    if sweep and not full:
        kw.update({k: v for k, v in SWEEP_KWARGS.get(name, {}).items() if k in params})
    if "sizes" in params:
        kw["sizes"] = sizes
    return kw


def _parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s.replace("_", "")) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes takes whole numbers, e.g. 10000,100000; "
                                         f"got {text!r}") from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"--sizes needs positive numbers, got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {available()}")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--full", action="store_true",
                   help="full-length runs and the 1M size (well over 20 minutes)")
    p.add_argument("--sizes", type=_parse_sizes, default=None,
                   help="memory-set sizes, comma-separated (default 10000,100000)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--dry", action="store_true",
                   help="run nothing; write the JSON document with every benchmark skipped")
    p.add_argument("--out", type=Path, default=RESULTS / "all.json")
    args = p.parse_args(argv)
    names = args.names or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; available: {available()}")
    if args.list:
        for name in available():
            print(f"{name:12} {_summary(name)}")
        return 0
    sizes: tuple[int, ...] = args.sizes or (FULL_SIZES if args.full else DEFAULT_SIZES)
    os.environ["RAE_BENCH_SIZES"] = ",".join(map(str, sizes))
    sweep = not args.names
    report: dict[str, dict[str, Any]] = {
        n: {"status": "skipped", "seconds": None, "rows": []} for n in available()}
    doc: dict[str, Any] = {
        "schema": SCHEMA, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick, "full": args.full, "sizes": list(sizes),
        "cpus": os.cpu_count(), "load_average_start": _load_average(),
        "load_average_end": None, "seconds": None, "budget_seconds": BUDGET_S,
        "within_budget": None, "benchmarks": report}
    failed = 0
    t_all = time.perf_counter()
    for name in [] if args.dry else names:
        t0 = time.perf_counter()
        print(f"\n[bench] {name} (load average {_load_average()})", file=sys.stderr, flush=True)
        status = "ok"
        try:
            mod = importlib.import_module(f"bench.bench_{name}")
            kw = _kwargs_for(mod.run, name, sweep=sweep, full=args.full, sizes=sizes)
            rows: list[Row] = []
            if name in SIZE_ENV and not args.quick and "sizes" not in kw:
                for n in sizes:
                    os.environ[SIZE_ENV[name]] = str(n)
                    rows += [{**r, "figure": f"n={n}: {r['figure']}"}
                             for r in mod.run(quick=False, **kw)]
                os.environ.pop(SIZE_ENV[name])
            else:
                rows = mod.run(quick=args.quick, **kw)
        except Exception as exc:  # a broken benchmark is a finding, not a crash
            traceback.print_exc()
            rows = [{"figure": f"{name} failed", "value": float("nan"), "unit": "",
                     "target": None, "baseline": None, "baseline_value": None,
                     "ratio": None, "ok": False, "notes": f"{type(exc).__name__}: {exc}"}]
            status = "failed"
            failed += 1
        secs = time.perf_counter() - t0
        rows = _normalise(rows)
        print_table(name, rows)
        print(f"[bench] {name}: {secs:.1f} s", flush=True)
        write_json(name, rows, seconds=secs)
        report[name] = {"status": status, "seconds": round(secs, 1), "rows": rows}
    total = time.perf_counter() - t_all
    doc.update(seconds=round(total, 1), load_average_end=_load_average(),
               within_budget=None if args.dry or args.names else total <= BUDGET_S)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=str))
    every = [{**r, "figure": f"{name}: {r['figure']}"}
             for name, rep in report.items() for r in rep["rows"]]
    every += [{"figure": f"{name}: run time ({rep['status']})", "value": rep["seconds"],
               "unit": "s", "target": None, "baseline": None, "ratio": None, "ok": None,
               "notes": ""} for name, rep in report.items() if rep["seconds"] is not None]
    if every:
        print_table("all benchmarks", every)
    print(f"total {total:.0f} s (budget {BUDGET_S} s for the default sweep); wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
