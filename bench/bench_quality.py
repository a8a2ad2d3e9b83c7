"""Search quality on real maintenance data (../shared/data): MRR@10 and Recall@5 of the
node's hybrid search against BM25-only and vector-only, all three through the same service
(:class:`rae_edge.memory.search.HybridSearch`), same index, same prefilters, same run.

Sets (queries and relevance judgements derived from the data, never hand-labelled):
- ``maintnet``: problem -> fix. Every ACTION line is a past incident (its text is the
  action only); for each problem logged two or more times one occurrence is held out
  and its PROBLEM text is the query; relevant = the other actions logged for that problem.
- ``mwo2kg-similar``: the 4,002 annotated short texts; relevant = other texts whose main
  Item mention has the same head word and whose Observation mention has the same head word
  (same object, same state), the query text itself excluded.
- ``mwo2kg-asset``: the 500 work orders as incidents of their asset (AssetID = machine);
  the query is a work order's text, searched on that machine with ``as_of`` just before
  it; relevant = that asset's earlier orders on the same functional location.
- ``maintie``: the 1,076 expert-annotated texts; relevant = other texts with the same
  (finest) PhysicalObject type and the same State type.

Recall@5 divides by min(|relevant|, 5), so a perfect top 5 scores 1 even when a query has
more relevant answers. Fusion weights are chosen on the even-numbered queries of every set
(a small grid, one setting for all sets: the product has one default) and reported on the
odd-numbered ones, so the reported hybrid figures are not tuned on their own queries.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import Row, embedding_cache, main_for, row

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
K = 10
BASE = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass
class Query:
    text: str
    relevant: set[str]
    machine_id: str | None = None
    as_of: datetime | None = None
    exclude: str | None = None


@dataclass
class EvalSet:
    name: str
    tenant: str
    docs: list[Any] = field(default_factory=list)  # rae_sync Incident
    queries: list[Query] = field(default_factory=list)


def _incident(tenant: str, machine: str, when: datetime, text: str) -> Any:
    from rae_sync.domain import Incident

    return Incident(tenant_id=tenant, machine_id=machine, occurred_at=when, symptom=text)


def maintnet(quick: bool) -> EvalSet:
    s = EvalSet("maintnet problem->fix", "qmaintnet")
    with (DATA / "maintnet" / "aircraft_problem_action.csv").open(encoding="utf-8-sig") as f:
        rows = [r for r in csv.DictReader(f) if r["PROBLEM"].strip() and r["ACTION"].strip()]
    if quick:
        rows = rows[:1500]
    by_problem: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_problem[" ".join(r["PROBLEM"].split()).upper()].append(i)
    held = {idx[0] for idx in by_problem.values() if len(idx) >= 2}
    ids: dict[int, str] = {}
    for i, r in enumerate(rows):
        if i in held:
            continue
        inc = _incident(s.tenant, "fleet", BASE + timedelta(minutes=i), r["ACTION"].strip())
        s.docs.append(inc)
        ids[i] = inc.id
    for idx in by_problem.values():
        if len(idx) >= 2:
            s.queries.append(Query(rows[idx[0]]["PROBLEM"].strip(), {ids[i] for i in idx[1:]}))
    return s


def _head(tokens: list[str], mentions: list[dict[str, Any]], pred: Callable[[str], bool],
          ) -> str | None:
    spans = [m for m in mentions if any(pred(lab) for lab in m["labels"])]
    if not spans:
        return None
    m = max(spans, key=lambda m: (m["end"] - m["start"], -m["start"]))
    return str(tokens[m["end"] - 1]).lower()


def mwo2kg_similar(quick: bool) -> EvalSet:
    s = EvalSet("mwo2kg same object+state", "qmwo2kg")
    texts: list[tuple[str, tuple[str, str] | None]] = []
    for name in ("train_3200.json", "dev_401.json", "test_401.json"):
        for line in (DATA / "mwo2kg" / name).read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            item = _head(d["tokens"], d["mentions"], lambda lab: lab == "Item")
            obs = _head(d["tokens"], d["mentions"], lambda lab: lab.startswith("Observation"))
            texts.append((" ".join(d["tokens"]), (item, obs) if item and obs else None))
    if quick:
        texts = texts[:1500]
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for i, (text, key) in enumerate(texts):
        inc = _incident(s.tenant, "mine", BASE + timedelta(minutes=i), text)
        s.docs.append(inc)
        if key:
            groups[key].append(inc.id)
    _group_queries(s, groups)
    return s


def _group_queries(s: EvalSet, groups: dict[tuple[str, str], list[str]]) -> None:
    """Each member of a group of two or more is a query; the rest of its group is relevant."""
    by_id = {d.id: d for d in s.docs}
    for members in groups.values():
        if len(members) >= 2:
            for m in members:
                s.queries.append(Query(by_id[m].symptom, set(members) - {m}, exclude=m))


def mwo2kg_asset(quick: bool) -> EvalSet:
    s = EvalSet("mwo2kg same asset, earlier", "qmwoasset")
    with (DATA / "mwo2kg" / "work_orders.csv").open(encoding="utf-8-sig") as f:
        rows = [r for r in csv.DictReader(f) if r["ShortText"].strip()
                and r["AssetID"].startswith("AID")]
    dated = []
    for i, r in enumerate(rows):
        d, m, y = (int(x) for x in r["Work_Order_Basic_Start_Date"].split("/"))
        when = datetime(y, m, d, tzinfo=UTC) + timedelta(seconds=i)  # unique, stable order
        inc = _incident(s.tenant, r["AssetID"], when, r["ShortText"].strip())
        s.docs.append(inc)
        dated.append((inc, r["Functional_Location_Description"].strip()))
    for inc, loc in dated:
        rel = {o.id for o, l2 in dated if o.machine_id == inc.machine_id and l2 == loc
               and o.occurred_at < inc.occurred_at}
        if rel:
            s.queries.append(Query(inc.symptom, rel, machine_id=inc.machine_id,
                                   as_of=inc.occurred_at - timedelta(microseconds=1)))
    return s


def maintie(quick: bool) -> EvalSet:
    s = EvalSet("maintie same object+state", "qmaintie")
    docs = json.loads((DATA / "maintie" / "gold_release.json").read_text(encoding="utf-8"))
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for i, d in enumerate(docs):
        text = " ".join(t for t in d["tokens"] if t != "<id>")
        inc = _incident(s.tenant, "site", BASE + timedelta(minutes=i), text)
        s.docs.append(inc)
        obj = [e["type"] for e in d["entities"] if e["type"].startswith("PhysicalObject")]
        state = [e["type"] for e in d["entities"] if e["type"].startswith("State")]
        if obj and state:
            groups[(obj[0], state[0])].append(inc.id)
    _group_queries(s, groups)
    return s


def _metrics(ranked: list[str], q: Query) -> tuple[float, float]:
    ranked = [i for i in ranked if i != q.exclude][:K]
    mrr = next((1.0 / (n + 1) for n, i in enumerate(ranked) if i in q.relevant), 0.0)
    recall = len(set(ranked[:5]) & q.relevant) / min(len(q.relevant), 5)
    return mrr, recall


def run(quick: bool = False) -> list[Row]:
    from rae_edge import config
    from rae_edge.node import EdgeNode

    if not DATA.exists():
        return [row("search quality", 0.0, "", ok=None,
                    notes=f"skipped: {DATA} is absent (the shared data sets)")]
    builders = [maintnet, mwo2kg_similar, mwo2kg_asset, maintie]
    sets = [b(quick) for b in builders]
    rng = random.Random(7)
    for s in sets:  # a deterministic sample when quick
        if quick and len(s.queries) > 200:
            s.queries = rng.sample(s.queries, 200)
    tmp = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    out: list[Row] = []
    try:
        with embedding_cache("quality"):
            out = _evaluate(EdgeNode(config.load(None, data_dir=tmp)), sets)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _evaluate(node: Any, sets: list[EvalSet]) -> list[Row]:
    from rae_edge.memory.search import Fusion, fuse, where_clause

    out: list[Row] = []
    for s in sets:
        node.indexer.index_incidents(s.docs, refresh=False)
    node.indexer.refresh()
    search = node.memory.searcher
    # Both retrievers once per query (candidates as deep as the service uses).
    lists: dict[str, list[dict[str, list[dict[str, Any]]]]] = {}
    for s in sets:
        lists[s.name] = []
        for q in s.queries:
            where = where_clause(s.tenant, q.machine_id, (), q.as_of, True)
            depth = Fusion().candidates + 1
            lists[s.name].append(search.retrieve(s.tenant, search.normalize(q.text),
                                                 where, depth))

    def score(s: EvalSet, f: Fusion | None, mode: str, part: int) -> tuple[float, float]:
        mrrs, recs = [], []
        for n, (q, ls) in enumerate(zip(s.queries, lists[s.name], strict=True)):
            if n % 2 != part:
                continue
            if mode == "hybrid":
                assert f is not None
                ranked = [str(c.row["id"]) for c in fuse(ls, f)]
            else:
                ranked = [str(r["id"]) for r in ls[mode]]
            m, r = _metrics(ranked, q)
            mrrs.append(m)
            recs.append(r)
        return sum(mrrs) / max(1, len(mrrs)), sum(recs) / max(1, len(recs))

    # Tune on the even half: the setting with the best mean margin over the better
    # baseline across the sets.
    grid = [replace(Fusion(), k0=k0, vector=wv, text=1.0)
            for k0 in (5.0, 20.0, 60.0) for wv in (0.5, 0.75, 1.0, 1.5, 2.0)]
    base_tune = {s.name: max(score(s, None, "vector", 0)[0], score(s, None, "text", 0)[0])
                 for s in sets}

    def margin(f: Fusion) -> float:
        return min(score(s, f, "hybrid", 0)[0] - base_tune[s.name] for s in sets)

    best = max(grid, key=margin)
    default = Fusion()
    for s in sets:
        h = score(s, best, "hybrid", 1)
        hd = score(s, default, "hybrid", 1)
        v = score(s, None, "vector", 1)
        t = score(s, None, "text", 1)
        n_test = len(s.queries[1::2])
        for metric, idx in (("MRR@10", 0), ("Recall@5", 1)):
            better = max(v[idx], t[idx])
            name = "vector-only" if v[idx] >= t[idx] else "BM25-only"
            out.append(row(
                f"{s.name}: {metric} hybrid", h[idx], "", target="> best baseline",
                baseline=name, baseline_value=better, ok=h[idx] > better,
                higher_is_better=True,
                notes=f"vector-only {v[idx]:.3f}, BM25-only {t[idx]:.3f}, hybrid with "
                      f"the code's default fusion {hd[idx]:.3f}; {n_test} held-out "
                      f"queries, {len(s.docs)} memories"))
    out.append(row("fusion chosen on the tuning half", best.vector, "w_vector",
                   notes=f"k0={best.k0}, w_text={best.text}, worst-set MRR margin over "
                         f"the better baseline on the tuning half {margin(best):+.3f}; "
                         f"the code's Fusion() default: k0={default.k0}, "
                         f"w_vector={default.vector}"))
    node.close()
    return out


if __name__ == "__main__":
    main_for(run)
