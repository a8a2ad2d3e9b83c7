"""Token saving of ``/context`` against naive RAG, measured (the seed's "90 %" claim).

Over the problem -> fix queries of ``../shared/data`` (maintnet: a problem logged twice or
more, one occurrence's PROBLEM is the query, the ACTIONs logged for the others are the
relevant memories; the same derivation as ``bench_quality``) and maintie's held-out set
(same object and state type; the query's own text is indexed and stays in both the pack's
and naive RAG's results): for each query, the context pack at budgets of 1k, 2k and 4k tokens
(tokens it sends, recall of the relevant memories; the pack as it is, which stops when
relevance drops, and the pack that always fills its budget, as before, in the same run),
against naive RAG: the top-k whole
memories of a plain vector search, each rendered exactly as the pack renders it, for
k = 1..200. Tokens are the embedder tokenizer's, on the same text for both.

Reported per budget: the pack's mean tokens and recall; naive RAG at equal recall, run as
it is run (one k for every query: the smallest k whose mean recall reaches the pack's) and
the saving against its tokens; the same against a per-query oracle k (the smallest k that
reaches the pack's recall for that query: a lower bound on naive tokens no real system
attains); naive RAG's recall at equal tokens (per query, the top-k that fits the pack's
tokens); and what sending every matching memory would cost (``tokens_all_matches``) and every memory
of the set (the seed's "instead of sending 100k").
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
NAIVE_K = 200  # deep enough for a fixed k to reach the pack's recall at 4k
_COLUMNS = ["id", "kind", "text", "machine_id", "occurred_at", "source"]


def mean(xs: list[float] | list[int]) -> float:
    return sum(xs) / max(1, len(xs))


def run(quick: bool = False) -> list[Row]:
    from rae_edge import config
    from rae_edge.node import EdgeNode

    if not DATA.exists():
        return [row("token saving", 0.0, "", notes=f"skipped: {DATA} is absent")]
    sets = [maintnet(quick), maintie(check=True)]  # maintie: its held-out object set
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
    from rae_edge.store.lance import sql_literal

    node.indexer.index_incidents(s.docs, refresh=True)
    search = node.memory.searcher
    count = node.embedder.count_tokens
    header = count(HEADER)
    out: list[Row] = []
    def rendered(r: dict[str, Any]) -> int:
        return int(count(render({"id": r["id"], "kind": r["kind"], "text": r["text"],
                                 "machine_id": r.get("machine_id"),
                                 "occurred_at": r.get("occurred_at"),
                                 "source": r.get("source")})))

    # The seed's "instead of sending 100k": every memory of the tenant, rendered alike.
    corpus = header + sum(rendered(r) for r in node.lance.rows(
        f"tenant_id = {sql_literal(s.tenant)}", _COLUMNS, len(s.docs) + 1))
    naive: list[tuple[list[int], list[float]]] = []  # per query: cumulative tokens, recall@k
    for q in s.queries:
        # The plain vector list of the same index the pack searches (the query's own row,
        # where a set indexes it, stays in both: each pays its tokens alike).
        lists, _ = search.retrieve(s.tenant, q.text,
                                   where_clause(s.tenant, None, (), None, True), NAIVE_K)
        rows = lists["vector"]
        tokens: list[int] = []
        recall: list[float] = []
        hit, used = 0, header
        for r in rows:
            used += rendered(r)
            hit += r["id"] in q.relevant
            tokens.append(used)
            recall.append(hit / len(q.relevant))
        naive.append((tokens, recall))
    # Naive RAG as it is run: one fixed k for every query. Per k, the mean tokens and
    # recall over the queries (a query with fewer than k results keeps its last value).
    fixed = [(mean([t[min(k, len(t) - 1)] if t else header for t, _ in naive]),
              mean([r[min(k, len(r) - 1)] if r else 0.0 for _, r in naive]))
             for k in range(NAIVE_K)]
    for budget in BUDGETS:
        for before in (False, True):
            out += _budget_rows(node, s, budget, before, naive, fixed, header, corpus)
    return out


def _budget_rows(node: Any, s: EvalSet, budget: int, before: bool,
                 naive: list[tuple[list[int], list[float]]],
                 fixed: list[tuple[float, float]], header: int, corpus: int) -> list[Row]:
    """The figures of one budget: the pack as it is (it stops when relevance drops) or,
    ``before``, the pack that always fills its budget (``Cutoff(0)``), in the same run."""
    from rae_edge.memory.context import Cutoff

    packer = node.memory.packer
    kept = packer.cutoff
    packer.cutoff = Cutoff(0.0) if before else kept
    try:
        ctx_tokens: list[int] = []
        all_tokens: list[int] = []
        oracle_tokens: list[int] = []
        ctx_recall: list[float] = []
        eq_recall: list[float] = []
        stopped: dict[str, int] = {}
        unreached = 0
        for q, (tokens, recall) in zip(s.queries, naive, strict=True):
            pack = node.memory.context(s.tenant, q.text, budget_tokens=budget)
            ids = {i.id for i in pack.items}
            r = len(ids & q.relevant) / len(q.relevant)
            ctx_tokens.append(pack.tokens_used)
            ctx_recall.append(r)
            all_tokens.append(pack.tokens_all_matches)
            stopped[pack.stopped] = stopped.get(pack.stopped, 0) + 1
            k = next((n for n, rec in enumerate(recall) if rec >= r), None)
            if k is None:
                unreached += 1
                k = len(tokens) - 1
            oracle_tokens.append(tokens[k] if tokens else header)
            fit = [n for n, t in enumerate(tokens) if t <= pack.tokens_used]
            eq_recall.append(recall[fit[-1]] if fit else 0.0)
    finally:
        packer.cutoff = kept
    n = len(s.queries)
    pack_t, pack_r = mean(ctx_tokens), mean(ctx_recall)
    k_eq = next((k for k, (_, rec) in enumerate(fixed) if rec >= pack_r), None)
    tag = f"{s.name} @{budget // 1000}k" + (" fill (before)" if before else "")
    why = ", ".join(f"{v} {k}" for k, v in sorted(stopped.items()))
    out: list[Row] = []
    if k_eq is None:
        out.append(row(f"{tag}: saving vs naive top-k, equal recall", float("nan"), "%",
                       baseline="naive top-k tokens", baseline_value=None,
                       notes=f"pack {pack_t:.0f} tokens, recall {pack_r:.3f}; no fixed "
                             f"k <= {NAIVE_K} reaches that recall (k={NAIVE_K}: recall "
                             f"{fixed[-1][1]:.3f}, {fixed[-1][0]:.0f} tokens)"))
    else:
        naive_t = fixed[k_eq][0]
        out.append(row(f"{tag}: saving vs naive top-k, equal recall",
                       (1 - pack_t / naive_t) * 100, "%", baseline="naive top-k tokens",
                       baseline_value=round(naive_t, 1),
                       notes=f"pack {pack_t:.0f} tokens, recall {pack_r:.3f}, stopped by: "
                             f"{why}; naive top-{k_eq + 1} (one k for all queries) recall "
                             f"{fixed[k_eq][1]:.3f} with {naive_t:.0f} tokens"))
    out.append(row(f"{tag}: recall", pack_r, "", baseline="naive, equal tokens",
                   baseline_value=round(mean(eq_recall), 4), higher_is_better=True,
                   notes=f"naive: per query the top-k that fits the pack's tokens; "
                         f"{n} queries, {len(s.docs)} memories"))
    if before:
        return out
    oracle = mean(oracle_tokens)
    out.append(row(f"{tag}: saving vs per-query best k", (1 - pack_t / oracle) * 100, "%",
                   baseline="oracle top-k tokens", baseline_value=round(oracle, 1),
                   notes=f"naive stopped, per query, at the smallest k that reaches the "
                         f"pack's recall (it cannot know it: a lower bound on naive RAG's "
                         f"tokens); {unreached}/{n} queries not reached within k={NAIVE_K}"))
    out.append(row(f"{tag}: saving vs all matches", (1 - pack_t / mean(all_tokens)) * 100,
                   "%", baseline="every match sent", baseline_value=round(mean(all_tokens)),
                   notes="the pack's own tokens_all_matches: every candidate its search "
                         "returned, whole"))
    out.append(row(f"{tag}: saving vs every memory", (1 - pack_t / corpus) * 100, "%",
                   baseline="whole corpus tokens", baseline_value=corpus,
                   notes=f"all {len(s.docs)} memories of the set sent (the seed's "
                         "'instead of 100k')"))
    return out


if __name__ == "__main__":
    main_for(run, "tokens")
