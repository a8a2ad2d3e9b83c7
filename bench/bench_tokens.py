"""Token saving of ``/context`` against naive RAG, measured (the seed's "90 %" claim).

Over the problem -> fix queries of ``../shared/data`` (maintnet: a problem logged twice or
more, one occurrence's PROBLEM is the query, the ACTIONs logged for the others are the
relevant memories; the same derivation as ``bench_quality``) and maintie (same object and
state type): for each query, the context pack at budgets of 1k, 2k and 4k tokens
(tokens it sends, recall of the relevant memories), against naive RAG: the top-k whole
memories of a plain vector search, each rendered exactly as the pack renders it, for
k = 1..60. Tokens are the embedder tokenizer's, on the same text for both.

Reported per budget: the pack's mean tokens and recall; naive RAG's tokens at equal recall
(per query, the smallest k whose recall reaches the pack's) and the saving against them;
naive RAG's recall at equal tokens (per query, the top-k that fits the pack's tokens); and
what sending every matching memory would cost (``tokens_all_matches``), the "100k" baseline.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.bench_quality import DATA, EvalSet, maintie, maintnet
from bench.common import Row, embedding_cache, main_for, row

BUDGETS = (1000, 2000, 4000)


def mean(xs: list[float] | list[int]) -> float:
    return sum(xs) / max(1, len(xs))
NAIVE_K = 60


def run(quick: bool = False) -> list[Row]:
    from rae_edge import config
    from rae_edge.node import EdgeNode

    if not DATA.exists():
        return [row("token saving", 0.0, "", notes=f"skipped: {DATA} is absent")]
    sets = [maintnet(quick), maintie(quick)]
    rng = random.Random(16)
    for s in sets:
        n = 60 if quick else 300
        if len(s.queries) > n:
            s.queries = rng.sample(s.queries, n)
    tmp = Path(tempfile.mkdtemp(prefix="bench-tokens-"))
    try:
        with embedding_cache("quality"):
            node = EdgeNode(config.load(None, data_dir=tmp))
            try:
                return [r for s in sets for r in _measure(node, s)]
            finally:
                node.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(node: Any, s: EvalSet) -> list[Row]:
    from rae_edge.memory.context import HEADER, render
    from rae_edge.memory.search import where_clause

    node.indexer.index_incidents(s.docs, refresh=True)
    search = node.memory.searcher
    count = node.embedder.count_tokens
    header = count(HEADER)
    out: list[Row] = []
    naive: list[tuple[list[int], list[float]]] = []  # per query: cumulative tokens, recall@k
    for q in s.queries:
        rows = search.retrieve(s.tenant, search.normalize(q.text),
                               where_clause(s.tenant, None, (), None, True), NAIVE_K)["vector"]
        rows = [r for r in rows if r["id"] != q.exclude]
        tokens: list[int] = []
        recall: list[float] = []
        hit, used = 0, header
        for r in rows:
            used += count(render({"id": r["id"], "kind": r["kind"], "text": r["text"],
                                  "machine_id": r.get("machine_id"),
                                  "occurred_at": r.get("occurred_at"),
                                  "source": r.get("source")}))
            hit += r["id"] in q.relevant
            tokens.append(used)
            recall.append(hit / len(q.relevant))
        naive.append((tokens, recall))
    for budget in BUDGETS:
        ctx_tokens: list[int] = []
        all_tokens: list[int] = []
        eq_tokens: list[int] = []
        ctx_recall: list[float] = []
        eq_recall: list[float] = []
        unreached = 0
        for q, (tokens, recall) in zip(s.queries, naive, strict=True):
            pack = node.memory.context(s.tenant, q.text, budget_tokens=budget)
            ids = {i.id for i in pack.items}
            r = len(ids & q.relevant) / len(q.relevant)
            ctx_tokens.append(pack.tokens_used)
            ctx_recall.append(r)
            all_tokens.append(pack.tokens_all_matches)
            k = next((n for n, rec in enumerate(recall) if rec >= r), None)
            if k is None:
                unreached += 1
                k = len(tokens) - 1
            eq_tokens.append(tokens[k] if tokens else header)
            fit = [n for n, t in enumerate(tokens) if t <= pack.tokens_used]
            eq_recall.append(recall[fit[-1]] if fit else 0.0)
        n = len(s.queries)
        saving = 1 - sum(ctx_tokens) / max(1, sum(eq_tokens))
        out.append(row(f"{s.name} @{budget // 1000}k: saving at equal recall", saving * 100,
                       "%", baseline="naive top-k tokens", baseline_value=mean(eq_tokens),
                       notes=f"pack {mean(ctx_tokens):.0f} tokens, recall {mean(ctx_recall):.3f}; "
                             f"naive top-k needs {mean(eq_tokens):.0f} tokens for the same "
                             f"recall ({unreached}/{n} queries not reached within k={NAIVE_K}); "
                             f"all matches {mean(all_tokens):.0f} tokens"))
        out.append(row(f"{s.name} @{budget // 1000}k: recall", mean(ctx_recall), "",
                       baseline="naive, equal tokens", baseline_value=mean(eq_recall),
                       higher_is_better=True, notes=f"{n} queries, {len(s.docs)} memories"))
        out.append(row(f"{s.name} @{budget // 1000}k: saving vs all matches",
                       (1 - sum(ctx_tokens) / max(1, sum(all_tokens))) * 100, "%",
                       baseline="every match sent", baseline_value=mean(all_tokens)))
    return out


if __name__ == "__main__":
    main_for(run, "tokens")
