"""How search candidates are ordered: fusion that follows the query, exact codes kept in
the top 3, and the field's verdicts. Pure functions over retrieved rows, so the service
and the quality benchmark (bench/bench_quality.py) rank with the same code.

1. :func:`profile` reads the query: the error codes and part/serial numbers it names
   (:mod:`rae_edge.ingest.structure`). A query naming any is *code-like*.
2. :func:`fuse` merges the retrievers' ranked lists (``vector``, ``text``, ``exact``) with
   the weights of the query's type (``Fusion.plain`` or ``Fusion.code``): reciprocal rank
   fusion (``rrf``: ``sum w / (k0 + rank)``), a weighted sum of normalised scores
   (``score``: cosine similarity min-max scaled over the list, BM25 divided by the list's
   best, exact = share of the query's codes the memory names), or a learnt linear
   combiner (``learned``) over :data:`FEATURES` of each candidate (cosine, its gap to the
   best, -log rank in each list, BM25 share of the best, in both lists, exact share, share
   of the query's word stems and of its letter trigrams in the candidate's text), trained
   with a listwise softmax loss by bench/bench_quality.py.
3. :func:`apply_feedback`: a memory confirmed "this fixed it" is raised a little for any
   query (more for more confirmations and more plants) and put first for a query on the
   same machine naming an error code (or part number) a confirmation's query named, for
   a query naming a code it carries (when it scores close to the best), and for a query
   like one it was confirmed for (above ``confirm_floor``); one marked "not relevant" for
   a query like this one (cosine of the query embeddings at or above
   ``reject_similarity``) is lowered, for that kind of query only.
4. :func:`pin_exact`: a memory naming a code or part number of the query that at most
   ``pin_top`` memories (within the prefilter) name is moved into the top ``pin_top``.

Every weight of :class:`Fusion` comes from bench/bench_quality.py: learnt or chosen by
leave-one-set-out over the shared data sets (each set is scored with what was learnt
without it; the defaults are those learnt on all of them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rae_edge.ingest.codes import find_codes
from rae_edge.ingest.structure import find_parts

if TYPE_CHECKING:
    from rae_edge.memory.feedback import MemoryFeedback

Method = Literal["rrf", "score", "learned"]
# What the learned combiner reads of each candidate (:func:`features`), in this order.
FEATURES = ("vector similarity", "vector similarity below the best", "vector -log rank",
            "BM25 share of the best", "BM25 -log rank", "in both lists", "exact share",
            "query stems in the text", "query trigrams in the text")
_WORD = re.compile(r"[a-z0-9]+")
STEM = 5  # a word's first letters: "replaced"/"replacing", "bearings"/"bearing" match


@dataclass(frozen=True)
class Weights:
    """One way of fusing the retrievers' lists."""

    method: Method = "score"
    vector: float = 0.5
    text: float = 0.5
    exact: float = 0.5
    k0: float = 20.0  # rrf only
    coef: tuple[float, ...] = ()  # learned only: one weight per FEATURES

    def label(self) -> str:
        if self.method == "learned":
            return "learned " + " ".join(f"{c:+.3g}" for c in self.coef)
        if self.method == "rrf":
            return f"rrf k0={self.k0:g} w_vec={self.vector:g} w_text={self.text:g}"
        return f"score w_vec={self.vector:g} w_text={self.text:g}"


@dataclass(frozen=True)
class Fusion:
    """Weights of the fusion, per query type, and of the reflective/feedback adjustments."""

    # bench_quality: plain, the combiner learnt on all three tuning sources (each source's
    # figure comes from the one learnt without it); code-like, the grid's choice with it
    # (15:15 run; 9 code-like queries decide it: vector 1 there, 0.25 in earlier runs).
    plain: Weights = field(default_factory=lambda: Weights(
        "learned", coef=(1.48, 1.24, 0.22, -0.438, 0.613, -0.0988, 1.32, 0.252, 4.09)))
    code: Weights = field(default_factory=lambda: Weights("rrf", 1.0, 1.0, 1.0, 5.0))
    correction_boost: float = 1.3
    superseded_factor: float = 0.6
    candidates: int = 50  # per retriever, at least; 4 x k when k is larger
    pin_top: int = 3
    # x (1 + b * log2(1 + confirmations) + p * (plants - 1)). b: the replay's choice on the
    # tuning sets (on the learnt score, exp of the logit: 0.05 = +0.05 to the logit per
    # doubling: enough to order otherwise equal fixes; larger boosts lift other queries'
    # wrong answers more than they help, and the same machine and code puts a fix first
    # without it); p: not measurable on single-plant sets, set equal to b.
    confirm_boost: float = 0.05
    plant_boost: float = 0.05
    # A query like one a fix was confirmed for (cosine >= confirm_similarity): that fix
    # first when it scores at least confirm_floor x the best (the replay's choice: 2, i.e.
    # never: on the shared sets query similarity does not tell which fixes carry over);
    # a query naming a code the confirmed memory carries (same machine: the prefilter):
    # first above confirm_code_floor x the best (a choice: the replay's memories carry no
    # codes, so it does not measure this one).
    confirm_similarity: float = 0.7
    confirm_floor: float = 2.0
    confirm_code_floor: float = 0.1
    confirm_lead: float = 0.01
    reject_factor: float = 0.3
    reject_similarity: float = 0.8


@dataclass(frozen=True)
class QueryProfile:
    exact: tuple[str, ...] = ()

    @property
    def code_like(self) -> bool:
        return bool(self.exact)


def profile(query: str) -> QueryProfile:
    codes = find_codes(query)
    return QueryProfile(exact=codes + find_parts(query, codes))


@dataclass
class Candidate:
    row: dict[str, Any]
    score: float = 0.0
    ranks: dict[str, int] | None = None
    superseded_by: list[str] | None = None
    exact: frozenset[str] = frozenset()
    rejected: bool = False


def _normalised(name: str, rows: Sequence[dict[str, Any]],
                exact: Mapping[str, set[str]], n_exact: int) -> list[float]:
    if name == "vector":
        sims = [1.0 - float(r.get("_distance", 1.0)) for r in rows]
        lo, hi = min(sims), max(sims)
        return [(s - lo) / (hi - lo) if hi > lo else 1.0 for s in sims]
    if name == "text":
        scores = [float(r.get("_score", 0.0)) for r in rows]
        top = max(scores)
        return [s / top if top > 0 else 0.0 for s in scores]
    return [len(exact.get(str(r["id"]), ())) / max(1, n_exact) for r in rows]


def fuse(lists: Mapping[str, Sequence[dict[str, Any]]], w: Weights,
         exact: Mapping[str, set[str]] | None = None, n_exact: int = 0,
         query: str = "") -> list[Candidate]:
    """The lists (``vector``, ``text``, optional ``exact``) merged, best first; ``query``
    (as the user typed it) is read by the learned combiner only."""
    exact = exact or {}
    weights = {"vector": w.vector, "text": w.text, "exact": w.exact}
    fused: dict[str, Candidate] = {}
    for name, rows in lists.items():
        if not rows:
            continue
        norm = _normalised(name, rows, exact, n_exact) if w.method == "score" else []
        for rank, r in enumerate(rows, start=1):
            rid = str(r["id"])
            c = fused.get(rid)
            if c is None:
                c = fused[rid] = Candidate(r, 0.0, {}, exact=frozenset(exact.get(rid, ())))
            if w.method == "score":
                c.score += weights[name] * norm[rank - 1]
            elif w.method == "rrf":
                c.score += weights[name] / (w.k0 + rank)
            assert c.ranks is not None
            c.ranks[name] = rank
    cands = list(fused.values())
    if w.method == "learned" and cands:
        logits = features(cands, lists, exact, n_exact, query) @ np.asarray(w.coef, dtype=float)
        # exp of the logit over the best one: positive, so the multiplicative adjustments
        # (corrections, verdicts) read as shifts of the logit, as they do for the others.
        for c, s in zip(cands, np.exp(logits - logits.max()), strict=True):
            c.score = float(s)
    return sorted(cands, key=lambda c: (-c.score, str(c.row["id"])))


def features(cands: Sequence[Candidate], lists: Mapping[str, Sequence[dict[str, Any]]],
             exact: Mapping[str, set[str]], n_exact: int, query: str = "") -> np.ndarray:
    """One row of :data:`FEATURES` per candidate. Ranks are by value, ties sharing the
    best (two identical memories score the same); a candidate a retriever did not bring
    gets that list's worst values: it ranks below the list's last. The stem share reads
    words both retrievers miss: BM25 matches whole tokens ("bearings" is not "bearing"),
    the vector blurs a shared rare word."""
    vec = lists.get("vector") or ()
    txt = lists.get("text") or ()
    sims = {str(r["id"]): 1.0 - float(r.get("_distance", 1.0)) for r in vec}
    bm25 = {str(r["id"]): float(r.get("_score", 0.0)) for r in txt}
    ids = [str(c.row["id"]) for c in cands]
    lo = min(sims.values(), default=0.0)
    sim = np.array([sims.get(i, lo) for i in ids])
    bm = np.array([bm25.get(i, 0.0) for i in ids])
    in_v = np.array([i in sims for i in ids])
    in_t = np.array([i in bm25 for i in ids])
    out = np.empty((len(ids), len(FEATURES)))
    out[:, 0] = sim
    out[:, 1] = sim - max(sims.values(), default=0.0)
    out[:, 2] = np.where(in_v, -np.log(_rank_of(sim, list(sims.values()))), -math.log(len(vec) + 1))
    out[:, 3] = bm / (max(bm25.values(), default=0.0) or 1.0)
    out[:, 4] = np.where(in_t, -np.log(_rank_of(bm, list(bm25.values()))), -math.log(len(txt) + 1))
    out[:, 5] = in_v & in_t
    out[:, 6] = [len(exact.get(i, ())) / max(1, n_exact) for i in ids]
    asked = stems(query)
    grams = tuple(trigrams(query))
    for n, c in enumerate(cands):
        words = _WORD.findall(str(c.row.get("text") or "").lower())
        out[n, 7] = len(asked & _stems(words)) / len(asked) if asked else 0.0
        if grams:
            # substring tests in C: the same as intersecting the text's trigram set,
            # without building it (a manual section is long, the query short)
            out[n, 8] = sum(map((" " + " ".join(words) + " ").__contains__, grams))
    if grams:
        out[:, 8] /= len(grams)
    else:
        out[:, 8] = 0.0
    return out


def stems(text: str) -> set[str]:
    """The text's words (two letters or more) cut to their first :data:`STEM` letters."""
    return _stems(_WORD.findall(text.lower()))


def _stems(words: Sequence[str]) -> set[str]:
    return {w[:STEM] for w in words if len(w) > 1}


def trigrams(text: str) -> set[str]:
    """The letter trigrams of the text's words, spaces marking where words begin and end
    (" bea", "ing "): misspellings and abbreviations maintenance logs are full of ("brg",
    "bearng", "replcd") share most of them with the word, where whole words and 5-letter
    stems do not."""
    t = " " + " ".join(_WORD.findall(text.lower())) + " "
    return {t[i:i + 3] for i in range(len(t) - 2)} if t.strip() else set()


def _rank_of(values: np.ndarray, listed: Sequence[float]) -> np.ndarray:
    """1 + how many of ``listed`` score above each value (ties share the best rank)."""
    desc = -np.sort(-np.asarray(listed, dtype=float)) if listed else np.zeros(0)
    return 1.0 + np.searchsorted(-desc, -values, side="left")


def apply_feedback(cands: Sequence[Candidate], verdicts: Mapping[str, MemoryFeedback],
                   query_vector: np.ndarray | None, f: Fusion,
                   asked: QueryProfile | None = None, machine_id: str | None = None) -> None:
    """Confirmed fixes up; memories judged not relevant to a query like this one down, for
    that kind of query only.

    A confirmation lifts its memory a little for any query. It goes first, whatever its
    score, for a query on machine ``machine_id`` naming a code of ``asked`` that a
    confirmation's query named on the same machine (what fixed E-201 on this machine is
    the first thing to try when E-201 comes back there; the memory need not name the
    code). It also goes first for a query naming a code it carries when it scores at
    least ``confirm_code_floor`` x the best candidate, and for a query
    like one it was confirmed for (cosine >= ``confirm_similarity``) above
    ``confirm_floor`` x the best: among similar candidates the confirmed fix ranks first
    (more confirmations and plants first among those)."""
    q = None
    if query_vector is not None:
        q = query_vector / max(float(np.linalg.norm(query_vector)), 1e-9)
    top = max((c.score for c in cands), default=0.0)
    keys = {(machine_id, code) for code in asked.exact} if asked is not None else set()
    for c in cands:
        v = verdicts.get(str(c.row["id"]))
        if v is None:
            continue
        if v.confirmations:
            boost = (1.0 + f.confirm_boost * math.log2(1 + v.confirmations)
                     + f.plant_boost * max(0, len(v.plants) - 1))
            sim = max((float(r @ q) for r in v.confirmed), default=0.0) if q is not None \
                else 0.0
            named = bool(keys & v.codes) or (
                bool(c.exact) and c.score >= f.confirm_code_floor * top)
            like = sim >= f.confirm_similarity and c.score >= f.confirm_floor * top
            if top > 0 and (named or like):
                # first; the fix confirmed for the query most like this one before others
                c.score = top * (1.0 + f.confirm_lead + (1.0 if named else sim)) * boost
            else:
                c.score *= boost
        if q is not None and any(float(r @ q) >= f.reject_similarity for r in v.rejections):
            c.score *= f.reject_factor
            c.rejected = True


def pin_exact(cands: list[Candidate], f: Fusion) -> list[Candidate]:
    """``cands`` (best first) with the memories that carry a rare exact code of the query
    moved into the top ``pin_top``: a code or serial that few memories name identifies
    what the technician is after, whatever the text around it."""
    holders: dict[str, int] = {}
    for c in cands:
        for v in c.exact:
            holders[v] = holders.get(v, 0) + 1
    pinned = [c for c in cands if not c.rejected
              and any(holders[v] <= f.pin_top for v in c.exact)][: f.pin_top]
    if not pinned or all(i < f.pin_top for i, c in enumerate(cands) if c in pinned):
        return cands
    ids = {id(c) for c in pinned}
    queue = list(pinned)
    out: list[Candidate] = []
    for c in cands:
        if id(c) in ids:
            if any(q is c for q in queue):  # not placed early: keeps its own position
                queue = [q for q in queue if q is not c]
                out.append(c)
            continue
        while queue and f.pin_top - len(out) <= len(queue):
            out.append(queue.pop(0))
        out.append(c)
    out.extend(queue)
    return out
