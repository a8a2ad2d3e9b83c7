"""How search candidates are ordered: fusion that follows the query, exact codes kept in
the top 3, and the field's verdicts. Pure functions over retrieved rows, so the service
and the quality benchmark (bench/bench_quality.py) rank with the same code.

1. :func:`profile` reads the query: the error codes and part/serial numbers it names
   (:mod:`rae_edge.ingest.structure`). A query naming any is *code-like*.
2. :func:`fuse` merges the retrievers' ranked lists (``vector``, ``text``, ``exact``) with
   the weights of the query's type (``Fusion.plain`` or ``Fusion.code``): either reciprocal
   rank fusion (``rrf``: ``sum w / (k0 + rank)``) or a weighted sum of normalised scores
   (``score``: cosine similarity min-max scaled over the list, BM25 divided by the list's
   best, exact = share of the query's codes the memory names).
3. :func:`apply_feedback`: a memory confirmed "this fixed it" is raised (more for more
   confirmations and more plants); one marked "not relevant" for a query like this one
   (cosine of the query embeddings at or above ``reject_similarity``) is lowered, for that
   kind of query only.
4. :func:`pin_exact`: a memory naming a code or part number of the query that at most
   ``pin_top`` memories (within the prefilter) name is moved into the top ``pin_top``.

Every weight of :class:`Fusion` was chosen by leave-one-set-out over the shared data sets
(bench/bench_quality.py prints the choice of each fold and of all sets together; the
defaults are the latter).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rae_edge.ingest.codes import find_codes
from rae_edge.ingest.structure import find_parts

if TYPE_CHECKING:
    from rae_edge.memory.feedback import MemoryFeedback

Method = Literal["rrf", "score"]


@dataclass(frozen=True)
class Weights:
    """One way of fusing the retrievers' lists."""

    method: Method = "score"
    vector: float = 0.5
    text: float = 0.5
    exact: float = 0.5
    k0: float = 20.0  # rrf only

    def label(self) -> str:
        if self.method == "rrf":
            return f"rrf k0={self.k0:g} w_vec={self.vector:g} w_text={self.text:g}"
        return f"score w_vec={self.vector:g} w_text={self.text:g}"


@dataclass(frozen=True)
class Fusion:
    """Weights of the fusion, per query type, and of the reflective/feedback adjustments."""

    # Leave-one-set-out choices of bench_quality (all three tuning sources together).
    plain: Weights = field(default_factory=lambda: Weights("rrf", 0.5, 1.0, 1.0, 20.0))
    code: Weights = field(default_factory=lambda: Weights("rrf", 0.25, 1.0, 1.0, 5.0))
    correction_boost: float = 1.3
    superseded_factor: float = 0.6
    candidates: int = 50  # per retriever, at least; 4 x k when k is larger
    pin_top: int = 3
    # x (1 + b * log2(1 + confirmations) + p * (plants - 1)). b: the replay's choice on the
    # tuning sets (larger boosts lift other queries' wrong answers more than they help);
    # p: not measurable on single-plant sets, set equal to b.
    confirm_boost: float = 0.05
    plant_boost: float = 0.05
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
         exact: Mapping[str, set[str]] | None = None, n_exact: int = 0) -> list[Candidate]:
    """The lists (``vector``, ``text``, optional ``exact``) merged, best first."""
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
            part = norm[rank - 1] if w.method == "score" else 1.0 / (w.k0 + rank)
            c.score += weights[name] * part
            assert c.ranks is not None
            c.ranks[name] = rank
    return sorted(fused.values(), key=lambda c: (-c.score, str(c.row["id"])))


def apply_feedback(cands: Sequence[Candidate], verdicts: Mapping[str, MemoryFeedback],
                   query_vector: np.ndarray | None, f: Fusion) -> None:
    """Confirmed fixes up; memories judged not relevant to a query like this one down."""
    q = None
    if query_vector is not None:
        q = query_vector / max(float(np.linalg.norm(query_vector)), 1e-9)
    for c in cands:
        v = verdicts.get(str(c.row["id"]))
        if v is None:
            continue
        if v.confirmations:
            c.score *= (1.0 + f.confirm_boost * math.log2(1 + v.confirmations)
                        + f.plant_boost * max(0, len(v.plants) - 1))
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
