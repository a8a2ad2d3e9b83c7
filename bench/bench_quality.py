"""Search quality on real maintenance data (../shared/data): MRR@10 and Recall@5 of the
node's hybrid search against BM25-only and vector-only, all through the same service
(:class:`rae_edge.memory.search.HybridSearch`, ranked by :mod:`rae_edge.memory.ranking`),
same index, same prefilters, same run.

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
- ``maintie``: the expert-annotated texts whose (finest) PhysicalObject type hashes even;
  relevant = other texts with the same PhysicalObject type and the same State type.
- ``maintie check``: the other MaintIE texts (objects no tuning sees): the untouched check
  set. Split by object, not by row, so no object type is on both sides.
- ``exact code/serial``: maintnet actions, 20% carrying an error code and 10% a serial
  number, each in exactly one memory; the query is the value and the problem text.

Honest tuning, leave-one-set-out over the three sources (maintnet, mwo2kg, maintie): for
plain queries a linear combiner over each candidate's features
(:data:`rae_edge.memory.ranking.FEATURES`) is learnt (listwise softmax loss, each set
weighing the same) on the other two sources and scored on the one left out; the code-like
queries' fusion is chosen from a grid (RRF k0/weights, normalised-score weights, the
learnt combiner) on the same two (best worst-set margin over the better single retriever).
Beside each figure: the best fixed-grid fusion chosen the same way (the method of
before). The product default is learnt on all three and scored on the check set.
Recall@5 divides by min(|relevant|, 5). Every query is retrieved once (the embeddings
are cached on disk across runs, bench/.cache); each setting only re-ranks the lists.

Also: MRR@10 per query type; the exact-code top-3 rate through the whole service path;
a confirmation replay (each grouped query names its group's error code on its machine;
20% say "this fixed it"; MRR@10 of the other queries of the same machine and code and of
all others; its parameters chosen on the tuning sets); search
p95 at 100k memories (20k with --quick) against the search of before (alternating).
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
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
    group: str | None = None  # same machine and same problem (for the feedback replay)


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
                s.queries.append(Query(by_id[m].symptom, set(members) - {m}, exclude=m,
                                       group=f"{by_id[m].machine_id}|{members[0]}"))


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
                                   as_of=inc.occurred_at - timedelta(microseconds=1),
                                   group=f"{inc.machine_id}|{loc}"))
    return s


def maintie(check: bool) -> EvalSet:
    """MaintIE split by object, not by row: texts whose (finest) PhysicalObject type hashes
    even are a tuning set; the others, objects no tuning ever sees, the check set."""
    name = "maintie check (unseen objects)" if check else "maintie same object+state"
    s = EvalSet(name, "qmaintiecheck" if check else "qmaintie")
    docs = json.loads((DATA / "maintie" / "gold_release.json").read_text(encoding="utf-8"))
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for i, d in enumerate(docs):
        obj = [e["type"] for e in d["entities"] if e["type"].startswith("PhysicalObject")]
        state = [e["type"] for e in d["entities"] if e["type"].startswith("State")]
        side = bool(obj) and zlib.crc32(obj[0].encode()) % 2 == 1
        if side != check:
            continue
        text = " ".join(t for t in d["tokens"] if t != "<id>")
        inc = _incident(s.tenant, "site", BASE + timedelta(minutes=i), text)
        s.docs.append(inc)
        if obj and state:
            groups[(obj[0], state[0])].append(inc.id)
    _group_queries(s, groups)
    return s


def exact_codes(quick: bool) -> EvalSet:
    """Exact-code queries: maintnet actions of which some carry an error code (as the
    incident's code) or a serial number (in the text), each value in exactly one memory;
    the query is that value plus the problem text logged with the action, so the other
    actions of the same problem compete with it. Relevant = the one memory."""
    s = EvalSet("exact code/serial", "qcodes")
    with (DATA / "maintnet" / "aircraft_problem_action.csv").open(encoding="utf-8-sig") as f:
        rows = [r for r in csv.DictReader(f) if r["PROBLEM"].strip() and r["ACTION"].strip()]
    rows = rows[: 1500 if quick else 4000]
    rng = random.Random(11)
    for i, r in enumerate(rows):
        action, problem = r["ACTION"].strip(), " ".join(r["PROBLEM"].split())
        u = rng.random()
        value = None
        code = None
        if u < 0.2:
            code = value = f"E{1000 + i}"
        elif u < 0.3:
            value = f"SN{rng.randrange(10**5, 10**6)}X"
            action = f"{action} S/N {value}"
        from rae_sync.domain import Incident

        inc = Incident(tenant_id=s.tenant, machine_id="fleet", error_code=code,
                       occurred_at=BASE + timedelta(minutes=i), symptom=action)
        s.docs.append(inc)
        if value:
            s.queries.append(Query(f"{value} {problem}", {inc.id}))
    return s


def _metrics(ranked: list[str], q: Query) -> tuple[float, float]:
    ranked = [i for i in ranked if i != q.exclude][:K]
    mrr = next((1.0 / (n + 1) for n, i in enumerate(ranked) if i in q.relevant), 0.0)
    recall = len(set(ranked[:5]) & q.relevant) / min(len(q.relevant), 5)
    return mrr, recall


# -- evaluation ------------------------------------------------------------------------
TUNING_SOURCES = ("maintnet", "mwo2kg", "maintie")  # the folds of leave-one-set-out


def _grid() -> list[Any]:
    from rae_edge.memory.ranking import Weights

    rrf = [Weights("rrf", wv, 1.0, 1.0, k0) for k0 in (5.0, 20.0, 60.0)
           for wv in (0.25, 0.5, 1.0, 2.0, 4.0)]
    score = [Weights("score", a / 10, 1 - a / 10, 0.5) for a in range(2, 9)]
    return rrf + score


def _fit_combiner(per_set: list[list[tuple[Any, Any]]], l2: float = 1e-2,
                  steps: int = 300, lr: float = 0.1) -> tuple[float, ...]:
    """The learned combiner's weights (:data:`rae_edge.memory.ranking.FEATURES`): a linear
    score trained with a listwise softmax loss (the probability of a relevant candidate
    first), each set weighing the same, by Adam on standardised features, L2 ``l2``.
    ``per_set``: per training set, ``(features of the candidates, relevant?)`` per query
    that has a relevant candidate."""
    import numpy as np

    xs = [x for g in per_set for x, _ in g]
    ys = [y for g in per_set for _, y in g]
    qw = np.array([1.0 / len(g) for g in per_set for _ in g])
    qw /= qw.sum()
    n, d = max(len(x) for x in xs), xs[0].shape[1]
    feats = np.zeros((len(xs), n, d))
    valid = np.zeros((len(xs), n), dtype=bool)
    rel = np.zeros((len(xs), n), dtype=bool)
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        feats[i, : len(x)], valid[i, : len(x)], rel[i, : len(y)] = x, True, y
    mu, sd = feats[valid].mean(axis=0), feats[valid].std(axis=0) + 1e-9
    z = (feats - mu) / sd * valid[..., None]
    w, m1, m2 = np.zeros(d), np.zeros(d), np.zeros(d)
    for t in range(1, steps + 1):
        s = np.where(valid, z @ w, -np.inf)
        e = np.exp(s - s.max(axis=1, keepdims=True)) * valid
        p = e / e.sum(axis=1, keepdims=True)
        er = e * rel
        pr = er / er.sum(axis=1, keepdims=True)
        g = np.einsum("q,qn,qnd->d", qw, p - pr, z) + l2 * w
        m1 = 0.9 * m1 + 0.1 * g
        m2 = 0.999 * m2 + 0.001 * g * g
        w -= lr * (m1 / (1 - 0.9**t)) / (np.sqrt(m2 / (1 - 0.999**t)) + 1e-8)
    return tuple(round(float(c), 4) for c in w / sd)  # the mean shift changes no order


def _training_rows(s: EvalSet, got: list[tuple[Any, dict[str, set[str]], int]],
                   ) -> list[tuple[Any, Any]]:
    """The combiner's training rows of one set: per query with a relevant candidate, the
    candidates' features (the query itself, where it is in the corpus, left out)."""
    import numpy as np

    from rae_edge.memory.ranking import Weights, features, fuse

    out = []
    for q, (lists, exact, n_exact) in zip(s.queries, got, strict=True):
        cands = [c for c in fuse(lists, Weights("rrf"), exact, n_exact)
                 if str(c.row["id"]) != q.exclude]
        y = np.array([str(c.row["id"]) in q.relevant for c in cands])
        if y.any():
            out.append((features(cands, lists, exact, n_exact, q.text), y))
    return out


@dataclass
class Scored:
    """Per query: MRR@10 and Recall@5 of every grid setting and of the two baselines."""

    s: EvalSet
    source: str
    code_like: list[bool]
    grid: Any  # ndarray (queries, settings, 2): the grid, then the learned per fold
    vector: Any  # ndarray (queries, 2)
    text: Any


def run(quick: bool = False) -> list[Row]:
    from rae_edge import config
    from rae_edge.node import EdgeNode

    if not DATA.exists():
        return [row("search quality", 0.0, "", ok=None,
                    notes=f"skipped: {DATA} is absent (the shared data sets)")]
    tuning = [("maintnet", maintnet(quick)), ("mwo2kg", mwo2kg_similar(quick)),
              ("mwo2kg", mwo2kg_asset(quick)), ("maintie", maintie(False))]
    check = maintie(True)
    codes = exact_codes(quick)
    rng = random.Random(7)
    for _, s in [*tuning, ("check", check), ("codes", codes)]:
        if quick and len(s.queries) > 200:  # a deterministic sample when quick
            s.queries = rng.sample(s.queries, 200)
    tmp = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    try:
        with embedding_cache("quality"):
            node = EdgeNode(config.load(None, data_dir=tmp))
            try:
                return _evaluate(node, tuning, check, codes, quick)
            finally:
                node.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _rank(lists: dict[str, list[dict[str, Any]]], exact: dict[str, set[str]], w: Any,
          verdicts: dict[str, Any] | None = None, f: Any = None, vec: Any = None,
          query: str = "", machine_id: str | None = None) -> list[str]:
    """The service's ranking (:mod:`rae_edge.memory.ranking`) of already retrieved lists
    (as :meth:`rae_edge.memory.search.HybridSearch.candidates` ranks them)."""
    from rae_edge.memory.ranking import Fusion, apply_feedback, fuse, pin_exact, profile

    f = f or Fusion()
    asked = profile(query)
    cands = fuse(lists, w, exact, len(asked.exact), query)
    if verdicts:
        apply_feedback(cands, verdicts, vec, f, asked, machine_id)
        cands.sort(key=lambda c: (-c.score, str(c.row["id"])))
    return [str(c.row["id"]) for c in pin_exact(cands, f)]


def _evaluate(node: Any, tuning: list[tuple[str, EvalSet]], check: EvalSet,
              codes: EvalSet, quick: bool) -> list[Row]:
    import numpy as np

    from rae_edge.memory.ranking import Fusion, Weights, profile
    from rae_edge.memory.search import where_clause

    sets = [s for _, s in tuning] + [check, codes]
    for s in sets:
        node.indexer.index_incidents(s.docs, refresh=False)
    node.indexer.refresh()
    search = node.memory.searcher
    depth = Fusion().candidates + 1
    # Every retriever's lists, once per query; each setting then only re-ranks them.
    retrieved: dict[str, list[tuple[Any, dict[str, set[str]], int]]] = {}
    for _source, s in [*tuning, ("check", check)]:
        retrieved[s.name] = []
        for q in s.queries:
            where = where_clause(s.tenant, q.machine_id, (), q.as_of, True)
            lists, exact = search.retrieve(s.tenant, q.text, where, depth, q.machine_id)
            retrieved[s.name].append((lists, exact, len(profile(q.text).exact)))
    # The learned combiner, trained per fold on the tuning sets of the other sources
    # (never on the set scored), and on all of them for the product default.
    rows = {s.name: _training_rows(s, retrieved[s.name]) for _, s in tuning}
    learned: dict[str | None, int] = {}
    grid = _grid()
    for held in (*TUNING_SOURCES, None):
        coef = _fit_combiner([rows[s.name] for src, s in tuning if src != held])
        learned[held] = len(grid)
        grid.append(Weights("learned", coef=coef))
    static = [n for n in range(len(grid)) if n not in learned.values()]
    scored: list[Scored] = []
    for source, s in [*tuning, ("check", check)]:
        per_grid, vec_m, txt_m, code_like = [], [], [], []
        for q, (lists, exact, _n) in zip(s.queries, retrieved[s.name], strict=True):
            code_like.append(bool(exact))  # as the service: code weights when one is found
            per_grid.append([_metrics(_rank(lists, exact, w, query=q.text), q)
                             for w in grid])
            vec_m.append(_metrics([str(r["id"]) for r in lists["vector"]], q))
            txt_m.append(_metrics([str(r["id"]) for r in lists["text"]], q))
        scored.append(Scored(s, source, code_like, np.array(per_grid), np.array(vec_m),
                             np.array(txt_m)))
    out: list[Row] = []
    tune_sets = [x for x in scored if x.source != "check"]
    chk = next(x for x in scored if x.source == "check")

    def hybrid(x: Scored, i: int, j: int) -> Any:
        """Mean (MRR, Recall) with setting i for plain queries and j for code-like ones."""
        mask = np.array(x.code_like, dtype=bool)
        per = np.where(mask[:, None], x.grid[:, j, :], x.grid[:, i, :])
        return per.mean(axis=0)

    def best_single(x: Scored) -> Any:
        return np.maximum(x.vector.mean(axis=0), x.text.mean(axis=0))

    def choose(on: list[Scored], plain: list[int], code: list[int]) -> tuple[int, int, float]:
        """The (plain, code) settings with the best worst-set margin over the better single
        retriever (the smaller of the MRR and the Recall margins) on the sets ``on``."""
        best = (0, 0, -9.0, -9.0)
        for i in plain:
            for j in code:
                margins = [float(np.min(hybrid(x, i, j) - best_single(x))) for x in on]
                key = (min(margins), sum(margins) / len(margins))
                if key > best[2:]:
                    best = (i, j, *key)
        return best[0], best[1], best[2]

    def figure(x: Scored, i: int, j: int, how: str, fixed: tuple[int, int]) -> None:
        h = hybrid(x, i, j)
        g = hybrid(x, *fixed)
        v, t = x.vector.mean(axis=0), x.text.mean(axis=0)
        n_code = sum(x.code_like)
        mask = np.array(x.code_like, dtype=bool)
        per = np.where(mask[:, None], x.grid[:, j, :], x.grid[:, i, :])
        # Hindsight, per query: the better of the two single retrievers, and the best of
        # those and this hybrid; what no choice per query (a query-adaptive weight) passes.
        single = np.maximum(x.vector, x.text).mean(axis=0)
        oracle = np.maximum(np.maximum(x.vector, x.text), per).mean(axis=0)
        for metric, k, target in (("MRR@10", 0, 0.02), ("Recall@5", 1, 0.0)):
            better = max(v[k], t[k])
            name = "vector-only" if v[k] >= t[k] else "BM25-only"
            out.append(row(
                f"{x.s.name}: {metric} hybrid ({how})", float(h[k]), "",
                target=f">= best + {target:.2f}" if target else ">= best",
                baseline=name, baseline_value=float(better),
                ok=bool(h[k] >= better + target - 1e-9), higher_is_better=True,
                notes=f"margin {h[k] - better:+.3f}; vector-only {v[k]:.3f}, BM25-only "
                      f"{t[k]:.3f}; fixed-grid fusion chosen the same way "
                      f"({grid[fixed[0]].label()}): {g[k]:.3f}, margin {g[k] - better:+.3f}; "
                      f"hindsight per query: better single {single[k]:.3f} "
                      f"({single[k] - better:+.3f}), best of the three {oracle[k]:.3f} "
                      f"({oracle[k] - better:+.3f}); "
                      f"plain queries: {grid[i].label()}; code-like ({n_code} of "
                      f"{len(x.code_like)}): {grid[j].label()}; {len(x.s.docs)} memories"))

    # Leave one source out: the combiner learnt on the others, the code-like fusion
    # chosen on them; scored on the source left out. Beside it, the best fixed-grid
    # fusion chosen on the same sets (the way of before).
    chosen: dict[str, tuple[int, int]] = {}
    for source in TUNING_SOURCES:
        on = [x for x in tune_sets if x.source != source]
        i, j, _m = choose(on, [learned[source]], [*static, learned[source]])
        gi, gj, _g = choose(on, static, static)
        chosen[source] = (i, j)
        for x in tune_sets:
            if x.source == source:
                figure(x, i, j, f"learnt without {source}", (gi, gj))
    # The product default: learnt on every tuning set; scored on the untouched check set.
    i_all, j_all, m_all = choose(tune_sets, [learned[None]], [*static, learned[None]])
    figure(chk, i_all, j_all, "untouched check set", choose(tune_sets, static, static)[:2])
    default = Fusion()
    # Fusion() holds the weights as this table prints them (3 significant digits): the
    # same within 0.01 per weight.
    same = _close(grid[i_all], default.plain) and _close(grid[j_all], default.code)
    out.append(row("fusion learnt on all tuning sets", m_all, "margin",
                   ok=same, notes=f"plain: {grid[i_all].label()}; code-like: "
                   f"{grid[j_all].label()}; the code's Fusion() default: plain "
                   f"{default.plain.label()}, code {default.code.label()} "
                   f"({'the same' if same else 'DIFFERENT: update Fusion()'}); per fold: "
                   + "; ".join(f"without {k}: {grid[a].label()} / {grid[b].label()}"
                               for k, (a, b) in chosen.items())))
    # Per query type (the default fusion, all tuning sets and the check set together).
    for kind, want in (("code-like", True), ("plain", False)):
        h, v, t, n = [], [], [], 0
        for x in scored:
            mask = np.array(x.code_like, dtype=bool) == want
            if not mask.any():
                continue
            n += int(mask.sum())
            per = x.grid[:, j_all if want else i_all, :][mask]
            h.append(per[:, 0])
            v.append(x.vector[mask][:, 0])
            t.append(x.text[mask][:, 0])
        if n:
            hm, vm, tm = (float(np.concatenate(a).mean()) for a in (h, v, t))
            out.append(row(f"MRR@10 on {kind} queries (default fusion)", hm, "",
                           baseline="vector-only" if vm >= tm else "BM25-only",
                           baseline_value=max(vm, tm), higher_is_better=True,
                           notes=f"{n} queries over the 5 sets; vector-only {vm:.3f}, "
                                 f"BM25-only {tm:.3f} (the tuning sets' own queries are in "
                                 f"this pool: a breakdown, not a held-out figure)"))
    out.extend(_exact_codes(node, codes, search, depth))
    out.extend(_confirmations(node, scored, grid[i_all], grid[j_all]))
    out.extend(_latency(node, [x.s for x in scored] + [codes], quick))
    return out


def _close(a: Any, b: Any, tol: float = 0.01) -> bool:
    """The same fusion, learnt weights within ``tol`` of each other."""
    from dataclasses import replace

    if a.method != "learned" or b.method != "learned":
        return bool(a == b)
    return len(a.coef) == len(b.coef) and replace(a, coef=()) == replace(b, coef=()) and all(
        abs(x - y) <= tol for x, y in zip(a.coef, b.coef, strict=True))


def _exact_codes(node: Any, codes: EvalSet, search: Any, depth: int) -> list[Row]:
    """Top-3 rate of the one memory naming the query's code, through the whole service
    path (``node.memory.search``: fields lookup, fusion, pin), against the fusion of
    before this change (RRF k0 5, vector 0.5, text 1.0, no exact retriever)."""
    from rae_edge.memory.ranking import Weights
    from rae_edge.memory.search import where_clause

    old = Weights("rrf", 0.5, 1.0, 0.0, 5.0)
    hit_new = hit_old = 0
    for q in codes.queries:
        res = node.memory.search(codes.tenant, q.text, k=10)
        hit_new += any(h.id in q.relevant for h in res.hits[:3])
        lists, _ = search.retrieve(codes.tenant, q.text, where_clause(codes.tenant), depth)
        lists.pop("exact", None)
        hit_old += any(i in q.relevant for i in _rank(lists, {}, old)[:3])
    n = max(1, len(codes.queries))
    return [row("exact code/serial in the top 3", hit_new / n, "", target=">= 0.99",
                baseline="RRF before (no exact)", baseline_value=hit_old / n,
                ok=hit_new / n >= 0.99, higher_is_better=True,
                notes=f"{len(codes.queries)} queries (code or serial + the problem text) "
                      f"over {len(codes.docs)} memories, each value in exactly one memory")]


# (boost per log2(1 + confirmations), similarity of a query "like" the confirmed one,
# score floor of the promotion to first); a floor over 1 promotes nothing.
CONFIRM_GRID = [(b, sim, floor) for b in (0.05, 0.25, 1.0, 3.0) for sim in (0.7, 0.85)
                for floor in (0.1, 2.0)]


def fault_code(group: str) -> str:
    """The error code the replay gives a group (same machine, same problem): a stand-in
    for the code an alarm reports, derived from the group only (the sets carry none)."""
    return f"E{10000 + zlib.crc32(group.encode()) % 90000}"


def _confirmations(node: Any, scored: list[Scored], plain: Any, code: Any) -> list[Row]:
    """Replay, as the issue states it: every query of a set with machine/problem groups
    names its group's error code (:func:`fault_code`; the memories do not carry it) and
    is searched on its machine; 20% of them get "this fixed it" on a relevant memory (the
    best ranked relevant one, as a technician confirms what they found; the first
    relevant by id when none is in the top 10), stored through the node's feedback
    service with the query and machine. Then MRR@10 of the other queries of the same
    machine and error code, and of all other queries (where a boosted memory can only
    intrude), without and with the verdicts. The confirmation parameters
    (:data:`CONFIRM_GRID`) are chosen on the tuning sets (best net change over all their
    non-confirming queries) and reported on the check set too."""
    from dataclasses import replace

    from rae_edge.memory.ranking import Fusion
    from rae_edge.memory.search import where_clause
    from rae_sync.domain import Feedback, Verdict

    search = node.memory.searcher
    depth = Fusion().candidates + 1
    rng = random.Random(23)
    # per set: {variant: (queries, their lists)}, [(query index, in a confirmed group)].
    # "coded": each query names its group's code (the figure); "plain": the same queries
    # without it (what a confirmation does for words alone; the settings are chosen on
    # both, so the lift for any query is weighed against what it costs).
    Lists = tuple[list[Query], list[Any]]
    plan: list[tuple[Scored, dict[str, Lists], list[tuple[int, bool]]]] = []
    for x in scored:
        grouped = [q for q in x.s.queries if q.group]
        if not grouped:
            continue
        variants: dict[str, Lists] = {}
        for variant in ("coded", "plain"):
            qs = [Query(f"{fault_code(q.group)} {q.text}" if variant == "coded" else q.text,
                        q.relevant, q.group.split("|")[0], q.as_of, q.exclude, q.group)
                  for q in grouped if q.group]
            got = []
            for q in qs:
                where = where_clause(x.s.tenant, q.machine_id, (), q.as_of, True)
                lists, exact = search.retrieve(x.s.tenant, q.text, where, depth, q.machine_id)
                got.append((lists, exact, node.embedder.embed_one(search.normalize(q.text))))
            variants[variant] = (qs, got)
        qs, got = variants["coded"]
        chosen = set(rng.sample(range(len(qs)), max(1, len(qs) // 5)))
        groups = {qs[n].group for n in chosen}
        for n in sorted(chosen):
            lists, exact, _vec = got[n]
            ranked = [i for i in _rank(lists, exact, code if exact else plain,
                                       query=qs[n].text)[:K] if i in qs[n].relevant]
            target = ranked[0] if ranked else sorted(qs[n].relevant)[0]
            node.memory.feedback.store(Feedback(
                tenant_id=x.s.tenant, memory_id=target, verdict=Verdict.FIXED,
                query=qs[n].text, machine_id=qs[n].machine_id, author="bench",
                origin_node="bench/node"), outbox=False)
        plan.append((x, variants, [(n, q.group in groups) for n, q in enumerate(qs)
                                   if n not in chosen]))

    # The verdicts on each query's candidates and its MRR without them, read once.
    known: dict[tuple[str, str, int], tuple[dict[str, Any], float]] = {}
    for x, variants, todo in plan:
        for variant, (qs, got) in variants.items():
            for n, _same in todo:
                lists, exact, _vec = got[n]
                ids = [str(r["id"]) for rows in lists.values() for r in rows]
                ranked = _rank(lists, exact, code if exact else plain, query=qs[n].text)
                known[(x.s.name, variant, n)] = (
                    node.memory.feedback.for_memories(x.s.tenant, ids),
                    _metrics(ranked, qs[n])[0])

    Rises = dict[str, dict[bool, list[float]]]

    def replay(x: Scored, variants: dict[str, Lists], todo: list[tuple[int, bool]],
               p: tuple[float, float, float]) -> Rises:
        """``{variant: {same machine and code?: [MRR rise per query]}}``."""
        f = replace(Fusion(), confirm_boost=p[0], plant_boost=p[0], confirm_similarity=p[1],
                    confirm_floor=p[2])
        out: Rises = {}
        for variant, (qs, got) in variants.items():
            d: dict[bool, list[float]] = out.setdefault(variant, {True: [], False: []})
            for n, same in todo:
                q = qs[n]
                lists, exact, vec = got[n]
                verdicts, before = known[(x.s.name, variant, n)]
                after = _metrics(_rank(lists, exact, code if exact else plain, verdicts, f,
                                       vec, q.text, q.machine_id), q)[0]
                d[same].append(after - before)
        return out

    results = {p: [(x, replay(x, variants, todo, p)) for x, variants, todo in plan]
               for p in CONFIRM_GRID}

    def mean(v: list[float]) -> float:
        return sum(v) / max(1, len(v))

    def net(p: tuple[float, float, float]) -> float:
        return mean([r for x, d in results[p] if x.source != "check"
                     for by in d.values() for r in by[True] + by[False]])

    def label(p: tuple[float, float, float]) -> str:
        return f"boost {p[0]:g}, like at cosine >= {p[1]:g}, first above {p[2]:g} x best"

    best = max(CONFIRM_GRID, key=net)
    out: list[Row] = []
    for x, d in results[best]:
        same, other = mean(d["coded"][True]), mean(d["coded"][False])
        out.append(row(f"{x.s.name}: confirmations, MRR@10 rise (same machine and code)",
                       same, "", target=">= +0.05", baseline="same queries, no feedback",
                       baseline_value=None, ok=same >= 0.05, higher_is_better=True,
                       notes=f"{len(d['coded'][True])} queries of a confirmed machine and "
                             f"code; on its {len(d['coded'][False])} other queries "
                             f"{other:+.3f}; the same queries without the code: "
                             f"{mean(d['plain'][True]):+.3f} (others "
                             f"{mean(d['plain'][False]):+.3f}); {label(best)}"
                             + (" (check set: not used to choose it)"
                                if x.source == "check" else "")))
    dflt = Fusion()
    ok = (best == (dflt.confirm_boost, dflt.confirm_similarity, dflt.confirm_floor))
    out.append(row("confirmation setting chosen on the tuning sets", net(best), "net MRR",
                   ok=ok,
                   notes=f"{label(best)}; the code's Fusion(): {dflt.confirm_boost:g}, "
                         f"{dflt.confirm_similarity:g}, {dflt.confirm_floor:g}"))
    return out


def _latency(node: Any, sets: list[EvalSet], quick: bool) -> list[Row]:
    """Search p95 at 100k memories: the node's memories copied (new ids, the same
    vectors) up to 100k, then the service's search and the search of before this change
    (two retrievers, RRF, corrections; no profile, exact lookup, verdicts or pin),
    alternating query by query so load on the machine falls on both alike."""
    import numpy as np
    import pyarrow as pa

    from rae_edge.memory.ranking import Fusion, Weights, fuse
    from rae_edge.memory.search import COLUMNS, where_clause

    target_n = 20_000 if quick else 100_000  # quick: a smoke run, not the figure
    lance = node.lance
    base = lance.table.to_arrow()
    need = target_n - len(base)
    idx = pa.array([i % len(base) for i in range(need)])
    copies = base.take(idx)
    copies = copies.set_column(copies.schema.get_field_index("id"), "id", pa.array(
        [f"{x}-copy{n}" for n, x in enumerate(copies.column("id").to_pylist())]))
    copies = copies.set_column(copies.schema.get_field_index("tenant_id"), "tenant_id",
                               pa.array(["qlatency"] * need))
    copies = copies.set_column(copies.schema.get_field_index("machine_id"), "machine_id",
                               pa.array([f"M{n % 1000:04d}" for n in range(need)]))
    for start in range(0, need, 20_000):
        part = copies.slice(start, 20_000)
        lance.table.add(part)
        node.memory.fields.write(part.select(
            ["id", "tenant_id", "machine_id", "text", "section"]).to_pylist())
    lance.refresh_indexes(force=True)
    search = node.memory.searcher
    rng = random.Random(5)
    queries = [q.text for s in sets for q in s.queries]
    queries = rng.sample(queries, min(len(queries), 100 if quick else 300))
    old_w = Weights("rrf", 0.5, 1.0, 0.0, 5.0)
    new_ms: list[float] = []
    old_ms: list[float] = []
    for n, text in enumerate(queries):
        machine = f"M{n % 1000:04d}" if n % 2 else None
        for which in ((0, 1) if n % 2 else (1, 0)):
            t0 = time.perf_counter()
            if which == 0:
                search.candidates("qlatency", text, machine_id=machine, k=10)
            else:  # before: the same steps without the new ones
                norm = search.normalize(text)
                where = where_clause("qlatency", machine)
                vec = node.embedder.embed_one(norm)
                lists = {"vector": lance.vector_search(vec.tolist(), where, 50, COLUMNS),
                         "text": search._text(norm, where, 50)}
                cands = fuse(lists, old_w)
                search._reflect("qlatency", cands, None, Fusion(), where)
                cands.sort(key=lambda c: (-c.score, str(c.row["id"])))
            (new_ms if which == 0 else old_ms).append((time.perf_counter() - t0) * 1000)
    p_new = float(np.percentile(new_ms, 95))
    p_old = float(np.percentile(old_ms, 95))
    return [row(f"search p95 at {target_n // 1000}k memories (in process)", p_new, "ms",
                target="<= before x 1.10", baseline="search before", baseline_value=p_old,
                ok=p_new <= 1.10 * p_old,
                notes=f"{lance.count()} memories, {len(queries)} queries (code-like and "
                      f"plain, half with a machine filter), alternating; p50 "
                      f"{float(np.percentile(new_ms, 50)):.1f} vs "
                      f"{float(np.percentile(old_ms, 50)):.1f} ms")]


if __name__ == "__main__":
    main_for(run)
