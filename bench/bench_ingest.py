"""Ingest figures: embedding throughput of the ingest path against raw onnxruntime on the
same sentences and batch size, MaintNet's 6,169 lines end to end, a generated 200-page
PDF manual end to end, and the peak RSS of a node process with the embedder loaded.

Baselines are measured in the same run. Throughput: the raw loop (tokenizer padded to
each batch's longest, one ``InferenceSession.run`` per batch in input order, mean
pooling, L2) runs interleaved with the ingest path (``EmbeddingService.embed``) so both
see the same load on a shared machine; the figure is the ratio of medians. The
end-to-end figures carry the time raw onnxruntime alone takes to embed the same texts
(ratio = raw / end to end: how much of the time is the model itself; on a loaded
machine both slow down alike).

``.venv/bin/python -m bench.bench_ingest [--quick]``
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from bench.common import Row, main_for, row

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MAINTNET = SHARED / "maintnet" / "aircraft_problem_action.csv"
ABBREVIATIONS = SHARED / "maintnet" / "aviation_abbreviations.csv"
EXAMPLES = ROOT / "edge" / "examples"
BATCH = 32


def _sentences(n: int) -> list[str]:
    """Distinct maintenance lines (MaintNet problem + action when present, else generated)."""
    out: list[str] = []
    if MAINTNET.exists():
        with MAINTNET.open(encoding="utf-8-sig") as f:
            seen = dict.fromkeys(f"{r['PROBLEM']} — {r['ACTION']}" for r in csv.DictReader(f))
        out = list(seen)
    parts = ["pump", "valve", "sensor", "hose", "bearing", "seal", "motor", "filter"]
    i = 0
    while len(out) < n:
        out.append(f"{parts[i % 8]} {i} on line {i % 7} leaking after shift change, replaced "
                   f"{parts[(i * 3) % 8]} and checked pressure")
        i += 1
    return out[:n]


class _RawOrt:
    """The baseline: the model as plainly as onnxruntime runs it."""

    def __init__(self, model: Path, tokenizer: Path) -> None:
        self.tok = Tokenizer.from_file(str(tokenizer))
        self.tok.enable_truncation(256)
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self.sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])

    def embed(self, texts: list[str], batch: int) -> np.ndarray:
        out = []
        for s in range(0, len(texts), batch):
            enc = self.tok.encode_batch(texts[s : s + batch])
            ids = np.asarray([e.ids for e in enc], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
            h = self.sess.run(None, {"input_ids": ids, "attention_mask": mask,
                                     "token_type_ids": np.zeros_like(ids)})[0]
            m = mask[:, :, None].astype(np.float32)
            v = (h * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
            out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
        return np.vstack(out)


_RAW: list[_RawOrt] = []


def _raw() -> _RawOrt:
    from rae_models import embedder_files

    if not _RAW:
        files = embedder_files()
        _RAW.append(_RawOrt(files["model.onnx"], files["tokenizer.json"]))
    return _RAW[0]


def _raw_seconds(texts: list[str]) -> float:
    t = time.perf_counter()
    _raw().embed(texts, BATCH)
    return time.perf_counter() - t


def _throughput(quick: bool) -> list[Row]:
    from rae_edge.embedding import EmbeddingService

    n = 256 if quick else 2048
    texts = _sentences(n)
    raw = _raw()
    svc = EmbeddingService()
    raw.embed(texts[:64], BATCH)
    svc.embed(texts[:64])
    raw_rates, svc_rates = [], []
    for _ in range(2 if quick else 3):  # interleaved rounds: both see the same load
        t = time.perf_counter()
        a = raw.embed(texts, BATCH)
        raw_rates.append(n / (time.perf_counter() - t))
        t = time.perf_counter()
        b = svc.embed(texts)
        svc_rates.append(n / (time.perf_counter() - t))
    assert np.allclose(a, b, atol=1e-4), "the ingest path must give the raw model's vectors"
    raw_med, svc_med = statistics.median(raw_rates), statistics.median(svc_rates)
    ratio = svc_med / raw_med
    return [row("embedding throughput, ingest path", svc_med, "sent/s", target=">= 85% of raw",
                baseline="raw onnxruntime", baseline_value=raw_med, ok=ratio >= 0.85,
                higher_is_better=True,
                notes=f"{n} distinct MaintNet lines, batch {BATCH}, median of "
                      f"{len(raw_rates)} interleaved rounds; raw rounds "
                      f"{[round(r) for r in raw_rates]}, ingest rounds "
                      f"{[round(r) for r in svc_rates]}")]


def _node(tmp: Path, abbreviations: list[Path]):  # type: ignore[no-untyped-def]
    from rae_edge import config
    from rae_edge.node import EdgeNode

    return EdgeNode(config.load(None, data_dir=tmp, abbreviations=abbreviations))


def _maintnet(quick: bool) -> list[Row]:
    from rae_edge.ingest import ingest_paths

    if not MAINTNET.exists():
        return [row("MaintNet lines end to end", float("nan"), "s", target="<= 60 s",
                    ok=None, notes=f"{MAINTNET} absent: skipped")]
    with tempfile.TemporaryDirectory() as d:
        src = MAINTNET
        if quick:
            src = Path(d) / "head.csv"
            src.write_text("".join(MAINTNET.read_text(encoding="utf-8-sig")
                                   .splitlines(keepends=True)[:501]), encoding="utf-8")
        node = _node(Path(d) / "node", [ABBREVIATIONS] if ABBREVIATIONS.exists() else [])
        node.embedder.embed(["warm up"])  # the node's model is loaded before files arrive
        with src.open(encoding="utf-8-sig") as f:
            texts = [f"{r['PROBLEM']} — {r['ACTION']}" for r in csv.DictReader(f)]
        raw_secs = _raw_seconds(texts)
        t, cpu = time.perf_counter(), time.process_time()
        res = ingest_paths(node, [src], mapping=EXAMPLES / "maintnet_problem_action.yaml")
        secs, cpu = time.perf_counter() - t, time.process_time() - cpu
        stored = (node.duck.query("SELECT count(*) FROM incidents")[0][0], node.lance.count())
        t = time.perf_counter()
        again = ingest_paths(node, [src], mapping=EXAMPLES / "maintnet_problem_action.yaml")
        re_secs = time.perf_counter() - t
        node.close()
    lines = res.added + res.duplicates + len(res.rejected)
    return [
        row(f"MaintNet {lines} lines end to end", secs, "s",
            target="<= 60 s" if not quick else None, ok=secs <= 60 if not quick else None,
            baseline="raw ORT embed only", baseline_value=raw_secs,
            notes=f"parse + DuckDB + embed + LanceDB + index refresh; {lines / secs:.0f} "
                  f"lines/s; CPU {cpu:.1f} s (all threads); stored incidents/rows {stored}; "
                  f"rejected {len(res.rejected)}"),
        row("MaintNet re-ingest (all duplicates)", re_secs, "s",
            notes=f"added {again.added}, skipped {again.duplicates} (file recognised)"),
    ]


def _pdf(quick: bool) -> list[Row]:
    from pypdf import PdfReader

    from rae_edge.ingest import ingest_paths
    from rae_edge.sample_plant.pdfgen import long_manual, write_pdf

    pages = 20 if quick else 200
    with tempfile.TemporaryDirectory() as d:
        pdf = write_pdf(Path(d) / "manual.pdf", long_manual(pages), title="bench manual")
        n_pages = len(PdfReader(str(pdf)).pages)
        node = _node(Path(d) / "node", [])
        node.embedder.embed(["warm up"])
        t, cpu = time.perf_counter(), time.process_time()
        res = ingest_paths(node, [pdf], kind="manual")
        secs, cpu = time.perf_counter() - t, time.process_time() - cpu
        texts = [str(r["search_text"]) for r in node.lance.rows("kind = 'manual'",
                                                                 ["search_text"], 100_000)]
        raw_secs = _raw_seconds(texts)
        node.close()
    return [row(f"{n_pages}-page PDF manual end to end", secs, "s",
                target="<= 60 s" if not quick else None, ok=secs <= 60 if not quick else None,
                baseline="raw ORT embed only", baseline_value=raw_secs,
                notes=f"{res.added} chunks, {n_pages / secs:.1f} pages/s, CPU {cpu:.1f} s "
                      f"(all threads), rejected {len(res.rejected)}")]


# Peak RSS from /proc's VmHWM: ru_maxrss of a child created by fork starts at its parent's
# peak, which would charge the benchmark's own memory to the node.
_RSS_CHILD = r"""
import json, tempfile
from pathlib import Path
from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.sample_plant import load_sample_plant
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
d = tempfile.mkdtemp()
node = EdgeNode(config.load(None, data_dir=Path(d)))
base = hwm()
load_sample_plant(node)
node.embedder.embed(["hydraulic pressure " * 120] * 32)  # 32 texts at the 256-token cap
node.embedder.embed(["pump seal leaking, replaced seal"] * 256)
print(json.dumps({"before_model_kib": base, "peak_kib": hwm()}))
"""


def _rss() -> list[Row]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD], capture_output=True, text=True,
                         timeout=300, env=env, cwd=ROOT, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    peak = data["peak_kib"] / 1024
    return [row("peak RSS, node with embedder loaded", peak, "MiB", target="<= 600 MiB",
                ok=peak <= 600,
                notes=f"fresh process (VmHWM): node opened ({data['before_model_kib'] / 1024:.0f} "
                      f"MiB before the model), sample plant ingested, 32 texts of 256 tokens "
                      f"and 256 short ones embedded")]


def run(quick: bool = False) -> list[Row]:
    return [*_throughput(quick), *_maintnet(quick), *_pdf(quick), *_rss()]


if __name__ == "__main__":
    main_for(run, "ingest")
