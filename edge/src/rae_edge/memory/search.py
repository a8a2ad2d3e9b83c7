"""Hybrid search over the node's memories (LanceDB): vector + full text, fused.

1. The query is normalised like stored text (abbreviations expanded: "R&R" also reads
   "remove and replace"), then embedded.
2. Two retrievers run with the same prefilter (tenant always; machine, kind and ``as_of``
   when given): cosine vector search and LanceDB's native full-text search (BM25) on
   ``search_text``.
3. Reciprocal rank fusion: ``score = sum_r w_r / (k0 + rank_r)``; a memory found by both
   retrievers outranks one found by either alone.
4. Reflective memory outranks what it amends: corrections are boosted; a memory that a
   correction (in force at ``as_of``) amends is demoted and carries ``superseded_by``.

With a machine, the prefilter keeps that machine's memories and the general ones (manual
sections and documents tied to no machine); another machine's memories never pass it.
Every filter value goes through :func:`rae_edge.store.lance.sql_literal`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from rae_edge.errors import InvalidInputError
from rae_edge.store.lance import in_list, sql_literal
from rae_sync.domain import MemoryKind

if TYPE_CHECKING:
    from rae_edge.node import EdgeNode

log = logging.getLogger(__name__)

COLUMNS = ["id", "kind", "machine_id", "text", "occurred_at", "error_codes", "target_id",
           "document_id", "page", "section", "source"]
KINDS = tuple(k.value for k in MemoryKind)
Mode = Literal["hybrid", "vector", "text"]


@dataclass(frozen=True)
class Fusion:
    """Weights of reciprocal rank fusion and of the reflective-memory adjustments.

    ``k0`` and the retriever weights were chosen on the tuning half of the retrieval
    benchmark (bench/bench_quality.py: maintnet, mwo2kg, maintie) from a small grid, for the
    best worst-set margin over the better single retriever; full text weighs more because
    maintenance text is terse and code-like (part names, error codes)."""

    k0: float = 5.0
    vector: float = 0.5
    text: float = 1.0
    correction_boost: float = 1.3
    superseded_factor: float = 0.6
    candidates: int = 50  # per retriever, at least; 4 x k when k is larger


@dataclass
class Candidate:
    row: dict[str, Any]
    score: float = 0.0
    ranks: dict[str, int] | None = None
    superseded_by: list[str] | None = None


def where_clause(tenant_id: str, machine_id: str | None = None,
                 kinds: Sequence[str] = (), as_of: datetime | None = None,
                 include_general: bool = True) -> str:
    """The LanceDB prefilter; every value quoted by :func:`sql_literal`."""
    parts = [f"tenant_id = {sql_literal(tenant_id)}"]
    if machine_id is not None:
        mine = f"machine_id = {sql_literal(machine_id)}"
        parts.append(f"({mine} OR machine_id IS NULL)" if include_general else mine)
    if kinds:
        for k in kinds:
            if k not in KINDS:
                raise InvalidInputError(f"unknown kind {k!r}: choose one of {', '.join(KINDS)}")
        parts.append(in_list("kind", list(kinds)))
    if as_of is not None:
        parts.append(f"(occurred_at IS NULL OR occurred_at <= {sql_literal(as_of)})")
    return " AND ".join(parts)


class HybridSearch:
    """Search of one node's LanceDB memories."""

    def __init__(self, node: EdgeNode, fusion: Fusion | None = None) -> None:
        self.node = node
        self.fusion = fusion or Fusion()

    def normalize(self, q: str) -> str:
        return self.node.indexer.abbreviations.expand(" ".join(q.split()))

    def candidates(self, tenant_id: str, q: str, *, machine_id: str | None = None,
                   kinds: Sequence[str] = (), k: int = 10, as_of: datetime | None = None,
                   mode: Mode = "hybrid", include_general: bool = True,
                   fusion: Fusion | None = None) -> tuple[str, list[Candidate]]:
        """``(normalised query, fused candidates best first)``, more than ``k`` of them."""
        f = fusion or self.fusion
        q = q.strip()
        if not q:
            raise InvalidInputError("empty query: q must name what to look for")
        if len(q) > 2000:
            raise InvalidInputError("query too long (over 2000 characters)")
        norm = self.normalize(q)
        where = where_clause(tenant_id, machine_id, kinds, as_of, include_general)
        n = max(f.candidates, 4 * k)
        lists: dict[str, list[dict[str, Any]]] = {}
        if mode in ("hybrid", "vector"):
            vec = self.node.embedder.embed_one(norm)
            lists["vector"] = self.node.lance.vector_search(vec.tolist(), where, n, COLUMNS)
        if mode in ("hybrid", "text"):
            lists["text"] = self._text(norm, where, n)
        cands = fuse(lists, f)
        self._reflect(tenant_id, cands, as_of, f, where)
        cands.sort(key=lambda c: (-c.score, str(c.row["id"])))
        return norm, cands

    def retrieve(self, tenant_id: str, norm_query: str, where: str,
                 n: int) -> dict[str, list[dict[str, Any]]]:
        """Both retrievers' ranked rows for an already normalised query (benchmarks fuse
        these with several weightings without searching again)."""
        vec = self.node.embedder.embed_one(norm_query)
        return {"vector": self.node.lance.vector_search(vec.tolist(), where, n, COLUMNS),
                "text": self._text(norm_query, where, n)}

    def _text(self, query: str, where: str, n: int) -> list[dict[str, Any]]:
        try:
            return self.node.lance.text_search(query, where, n, COLUMNS)
        except Exception as exc:  # a query the FTS parser refuses: vector results still stand
            log.warning("full-text search failed for %r: %s", query, exc)
            return []

    def _reflect(self, tenant_id: str, cands: list[Candidate], as_of: datetime | None,
                 f: Fusion, where: str) -> None:
        """Corrections up, what they amend down (and marked). A correction of a found
        memory ranks at least where that memory would have ranked (boosted): what the
        field learnt about a memory is as relevant as the memory itself."""
        base_ids = {c.row["id"]: str(c.row["id"]).split("~", 1)[0] for c in cands}
        amended = self.node.duck.corrections_for_targets(
            tenant_id, sorted(set(base_ids.values())), as_of)
        by_id = {str(c.row["id"]): c for c in cands}
        inherit: dict[str, float] = {}
        for c in cands:
            by = amended.get(base_ids[c.row["id"]])
            if by:
                c.superseded_by = [x.id for x in by]
                for x in by:
                    inherit[x.id] = max(inherit.get(x.id, 0.0), c.score)
                c.score *= f.superseded_factor
        missing = [i for i in inherit if i not in by_id]
        if missing:
            # The same prefilter: no other machine, kind or time slips in this way.
            for row in self.node.lance.rows(f"({where}) AND {in_list('id', missing)}",
                                            COLUMNS, len(missing)):
                c = Candidate(row, 0.0, {})
                cands.append(c)
                by_id[str(row["id"])] = c
        for c in cands:
            cid = str(c.row["id"])
            c.score = max(c.score, inherit.get(cid, 0.0))
            if c.row["kind"] == MemoryKind.CORRECTION.value:
                c.score *= f.correction_boost


def fuse(lists: dict[str, list[dict[str, Any]]], f: Fusion) -> list[Candidate]:
    """Reciprocal rank fusion of ranked row lists (``vector``, ``text``), best first."""
    weights = {"vector": f.vector, "text": f.text}
    fused: dict[str, Candidate] = {}
    for name, rows in lists.items():
        for rank, row in enumerate(rows, start=1):
            c = fused.setdefault(str(row["id"]), Candidate(row, 0.0, {}))
            c.score += weights[name] / (f.k0 + rank)
            assert c.ranks is not None
            c.ranks[name] = rank
    return sorted(fused.values(), key=lambda c: (-c.score, str(c.row["id"])))
