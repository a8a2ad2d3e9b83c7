"""Hybrid search over the node's memories (LanceDB): vector + full text, fused.

1. The query is normalised like stored text (abbreviations expanded: "R&R" also reads
   "remove and replace"), then embedded.
2. Two retrievers run with the same prefilter (tenant always; machine, kind and ``as_of``
   when given): cosine vector search and LanceDB's native full-text search (BM25) on
   ``search_text``.
   When the query names error codes or part/serial numbers, a third retriever, ``exact``,
   finds the memories whose extracted fields (``memory_fields``) name them.
3. Fusion with the weights of the query's type (:mod:`rae_edge.memory.ranking`: a query
   whose code or part number a memory names, and plain language, weigh the retrievers
   differently).
4. Reflective memory outranks what it amends: corrections are boosted; a memory that a
   correction (in force at ``as_of``) amends is demoted and carries ``superseded_by``.
5. Verdicts: confirmed fixes up (first for a query on the same machine naming a code a
   confirmation's query named; first among close candidates for a query naming a code
   they carry), "not relevant" down for queries like
   the one it was given for; then a memory with a rare exact code of the query is kept in
   the top 3.

With a machine, the prefilter keeps that machine's memories and the general ones (manual
sections and documents tied to no machine); another machine's memories never pass it.
Every filter value goes through :func:`rae_edge.store.lance.sql_literal`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rae_edge.errors import InvalidInputError
from rae_edge.memory.ranking import (
    Candidate,
    Fusion,
    QueryProfile,
    apply_feedback,
    fuse,
    pin_exact,
    profile,
)
from rae_edge.store.lance import in_list, sql_literal
from rae_sync.domain import MemoryKind

if TYPE_CHECKING:
    from rae_edge.abbreviations import Abbreviations
    from rae_edge.embedding import EmbeddingService
    from rae_edge.memory.feedback import FeedbackService
    from rae_edge.memory.fields import MemoryFields
    from rae_edge.store.duck import DuckStore
    from rae_edge.store.lance import LanceStore

log = logging.getLogger(__name__)

COLUMNS = ["id", "kind", "machine_id", "text", "occurred_at", "error_codes", "target_id",
           "document_id", "page", "section", "source"]
__all__ = ["COLUMNS", "Candidate", "Fusion", "HybridSearch", "Mode", "fuse", "where_clause"]
KINDS = tuple(k.value for k in MemoryKind)
Mode = Literal["hybrid", "vector", "text"]


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

    def __init__(self, duck: DuckStore, lance: LanceStore, *, abbreviations: Abbreviations,
                 embedder: Callable[[], EmbeddingService], feedback: FeedbackService,
                 fields: MemoryFields, fusion: Fusion | None = None) -> None:
        self.duck = duck
        self.lance = lance
        self.abbreviations = abbreviations
        self._embedder = embedder  # a callable: the model loads on first use
        self.feedback = feedback
        self.fields = fields
        self.fusion = fusion or Fusion()
        # The full-text query runs beside the query's embedding and vector search (it needs
        # neither; ONNX and LanceDB both release the GIL): a search costs the longer of
        # the two, not their sum. Threads start on first use, end with this object.
        self._text_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fts")

    def normalize(self, q: str) -> str:
        return self.abbreviations.expand(" ".join(q.split()))

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
        prof = profile(q)
        lists: dict[str, list[dict[str, Any]]] = {}
        vec: np.ndarray | None = None
        text = self._text_soon(norm, where, n) if mode in ("hybrid", "text") else None
        if mode in ("hybrid", "vector"):
            vec = self._embedder().embed_one(norm)
            lists["vector"] = self.lance.vector_search(vec.tolist(), where, n, COLUMNS)
        if text is not None:
            lists["text"] = text.result()
        exact: dict[str, set[str]] = {}
        if mode == "hybrid" and prof.code_like:
            exact, lists["exact"] = self.exact(tenant_id, prof, where, list(lists.values()),
                                               machine_id, include_general)
        # Code weights when a memory names the query's code; a code nobody logged (an
        # alarm's first time) leaves plain language to rank.
        weights = f.code if exact else f.plain
        cands = fuse(lists, weights, exact, len(prof.exact), q)
        self._reflect(tenant_id, cands, as_of, f, where)
        verdicts = self.feedback.for_memories(
            tenant_id, [str(c.row["id"]) for c in cands])
        if verdicts:
            if vec is None and any(v.rejections or v.confirmed for v in verdicts.values()):
                vec = self._embedder().embed_one(norm)
            apply_feedback(cands, verdicts, vec, f, prof, machine_id)
        cands.sort(key=lambda c: (-c.score, str(c.row["id"])))
        return norm, pin_exact(cands, f) if mode == "hybrid" else cands

    def exact(self, tenant_id: str, prof: QueryProfile, where: str,
              have: Sequence[list[dict[str, Any]]] = (), machine_id: str | None = None,
              include_general: bool = True,
              ) -> tuple[dict[str, set[str]], list[dict[str, Any]]]:
        """The memories (within the prefilter) naming the query's codes or part numbers:
        ``({id: values named}, rows ranked by how many they name)``. Rows the other
        retrievers brought (``have``) passed the same prefilter and are reused; only the
        others are read from LanceDB, by id (indexed), and only this machine's: another
        machine's are dropped before, by the machine stored with the fields."""
        found = self.fields.exact(tenant_id, prof.exact, machine_id,
                                              include_general)
        if not found:
            return {}, []
        known = {str(r["id"]): r for rows in have for r in rows if str(r["id"]) in found}
        missing = sorted(set(found) - set(known))
        rows = list(known.values())
        if missing:
            rows += self.lance.rows(f"({where}) AND {in_list('id', missing)}",
                                         COLUMNS, len(missing))
        rows.sort(key=lambda r: (-len(found[str(r["id"])]), str(r["id"])))
        return {str(r["id"]): found[str(r["id"])] for r in rows}, rows

    def retrieve(self, tenant_id: str, query: str, where: str, n: int,
                 machine_id: str | None = None,
                 ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, set[str]]]:
        """Every retriever's ranked rows for a query, and the exact matches (benchmarks
        fuse these with several weightings without searching again)."""
        norm = self.normalize(query)
        prof = profile(query)
        text = self._text_soon(norm, where, n)
        vec = self._embedder().embed_one(norm)
        lists = {"vector": self.lance.vector_search(vec.tolist(), where, n, COLUMNS),
                 "text": text.result()}
        exact: dict[str, set[str]] = {}
        if prof.code_like:
            exact, lists["exact"] = self.exact(tenant_id, prof, where, list(lists.values()),
                                               machine_id)
        return lists, exact

    def _text_soon(self, query: str, where: str, n: int) -> Future[list[dict[str, Any]]]:
        return self._text_pool.submit(self._text, query, where, n)

    def _text(self, query: str, where: str, n: int) -> list[dict[str, Any]]:
        try:
            return self.lance.text_search(query, where, n, COLUMNS)
        except Exception as exc:  # a query the FTS parser refuses: vector results still stand
            log.warning("full-text search failed for %r: %s", query, exc)
            return []

    def _reflect(self, tenant_id: str, cands: list[Candidate], as_of: datetime | None,
                 f: Fusion, where: str) -> None:
        """Corrections up, what they amend down (and marked). A correction of a found
        memory ranks at least where that memory would have ranked (boosted): what the
        field learnt about a memory is as relevant as the memory itself."""
        base_ids = {c.row["id"]: str(c.row["id"]).split("~", 1)[0] for c in cands}
        amended = self.duck.corrections_for_targets(
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
            for row in self.lance.rows(f"({where}) AND {in_list('id', missing)}",
                                            COLUMNS, len(missing)):
                c = Candidate(row, 0.0, {})
                cands.append(c)
                by_id[str(row["id"])] = c
        for c in cands:
            cid = str(c.row["id"])
            c.score = max(c.score, inherit.get(cid, 0.0))
            if c.row["kind"] == MemoryKind.CORRECTION.value:
                c.score *= f.correction_boost

