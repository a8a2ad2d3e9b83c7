"""``python -m bench``: the JSON document has the same shape every run (checked with
``--dry``, which runs no benchmark), ``--list`` names every module, bad calls are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem.removeprefix("bench_") for p in (ROOT / "bench").glob("bench_*.py"))
TOP_KEYS = ["schema", "started_at", "quick", "full", "sizes", "cpus", "load_average_start",
            "load_average_end", "seconds", "budget_seconds", "within_budget", "benchmarks"]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_dry_run_writes_the_same_shape_every_time(tmp_path: Path) -> None:
    docs = []
    for i, extra in enumerate(([], ["--quick"], ["--full"])):
        out = tmp_path / f"all{i}.json"
        res = _bench("--dry", "--out", str(out), *extra)
        assert res.returncode == 0, res.stderr
        docs.append(json.loads(out.read_text()))
    for doc in docs:
        assert list(doc) == TOP_KEYS
        assert sorted(doc["benchmarks"]) == MODULES
        for entry in doc["benchmarks"].values():
            assert entry == {"status": "skipped", "seconds": None, "rows": []}
    assert docs[0]["sizes"] == [10_000, 100_000]
    assert docs[2]["sizes"] == [10_000, 100_000, 1_000_000]  # 1M only on request
    assert docs[0]["budget_seconds"] == 1200


def test_list_names_every_benchmark() -> None:
    res = _bench("--list")
    assert res.returncode == 0, res.stderr
    listed = [line.split()[0] for line in res.stdout.splitlines() if line.strip()]
    assert listed == MODULES


def test_unknown_benchmark_and_bad_sizes_are_refused(tmp_path: Path) -> None:
    res = _bench("--dry", "--out", str(tmp_path / "x.json"), "nosuchbench")
    assert res.returncode == 2 and "nosuchbench" in res.stderr
    res = _bench("--dry", "--out", str(tmp_path / "x.json"), "--sizes", "10k")
    assert res.returncode == 2 and "10k" in res.stderr
    assert not (tmp_path / "x.json").exists()
