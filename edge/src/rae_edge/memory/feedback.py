"""``FeedbackService`` (``node.memory.feedback``): "this fixed it" / "not relevant" verdicts.

A verdict is an append-only fact (:class:`rae_sync.domain.Feedback`, idempotent on id) kept
in DuckDB ``feedback`` with who and when (``origin_node`` is ``site/node``: plants are
counted by site); a local one is queued for sync in the same transaction (central fans it
out like a correction), one from another plant is stored with ``outbox=False``. The query a
verdict answered (either verdict) is embedded once, at store time, so ranking can tell
whether a later query is "like that one" without embedding it again.

Ranking reads :meth:`FeedbackService.for_memories`: confirmations (count, plants) per
memory, the query vectors of its confirmations and those of its "not relevant" verdicts,
and the (machine, code) pairs it was confirmed for: the error codes and part numbers the
confirmed query named, with the verdict's machine.
Which memories carry any verdict is cached in memory, so a search whose candidates carry
none costs no query.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rae_edge.errors import InvalidInputError, NotFoundError
from rae_edge.ingest.codes import find_codes
from rae_edge.ingest.structure import find_parts
from rae_edge.store.lance import sql_literal
from rae_edge.write.facts import FeedbackFacts
from rae_edge.write.targets import check_machine
from rae_sync.domain import Feedback, Verdict

if TYPE_CHECKING:
    from rae_edge.abbreviations import Abbreviations
    from rae_edge.embedding import EmbeddingService
    from rae_edge.store.duck import DuckStore
    from rae_edge.store.lance import LanceStore
    from rae_edge.write.writer import Writer


@dataclass
class MemoryFeedback:
    """The verdicts on one memory, as ranking and the briefing use them."""

    confirmations: int = 0
    plants: set[str] = field(default_factory=set)
    rejections: list[np.ndarray] = field(default_factory=list)  # unit query vectors
    confirmed: list[np.ndarray] = field(default_factory=list)  # unit query vectors
    # (machine, code) a confirmation's query named on that machine (codes and part numbers)
    codes: set[tuple[str | None, str]] = field(default_factory=set)


class FeedbackService:
    """Verdicts of one node (its own and those synced from other plants)."""

    def __init__(self, duck: DuckStore, lance: LanceStore, writer: Writer, *,
                 origin_node: str, abbreviations: Abbreviations,
                 embedder: Callable[[], EmbeddingService]) -> None:
        self.duck = duck
        self.lance = lance
        self.writer = writer
        self.origin_node = origin_node  # "site/node": verdicts are counted per plant
        self.abbreviations = abbreviations
        self._embedder = embedder  # a callable: the model loads on first use
        self._lock = threading.Lock()
        self._marked: dict[str, set[str]] | None = None  # tenant -> memory ids with verdicts

    def record(self, tenant_id: str, *, memory_id: str, verdict: Verdict, author: str,
               query: str | None = None, machine_id: str | None = None) -> Feedback:
        """A verdict given on this node: the memory must exist in the tenant (and belong
        to ``machine_id`` or to no machine when one is named); stored with its outbox row."""
        memory_id = memory_id.strip()
        query = " ".join((query or "").split()) or None
        rows = self.lance.rows(
            f"tenant_id = {sql_literal(tenant_id)} AND id = {sql_literal(memory_id)}",
            ["id", "machine_id"], 1) if memory_id else []
        if not rows:
            raise NotFoundError(f"unknown memory_id {memory_id!r}: no memory with that id")
        owner = rows[0].get("machine_id")
        if machine_id is not None:
            check_machine(self.duck, tenant_id, machine_id)
            if owner and owner != machine_id:
                raise InvalidInputError(f"memory {memory_id!r} belongs to machine {owner!r}, "
                                        f"not to {machine_id!r}")
        fb = Feedback(tenant_id=tenant_id, memory_id=memory_id, verdict=verdict, query=query,
                      machine_id=machine_id or owner, author=author,
                      origin_node=self.origin_node)
        self.store(fb, outbox=True)
        return fb

    def store(self, fb: Feedback, *, outbox: bool) -> bool:
        """Stores a verdict (idempotent on id); False when it was stored already."""
        vec: list[float] | None = None
        if fb.query:
            norm = self.abbreviations.expand(fb.query)
            vec = [float(x) for x in self._embedder().embed_one(norm)]
        facts = FeedbackFacts(vectors={fb.id: vec} if vec is not None else {},
                              to_outbox=outbox)
        # Marked before it is stored: a briefing built right after the commit (and cached
        # under the stamp the commit moved) must look its verdicts up. A marked memory
        # without verdicts costs one query that finds none.
        with self._lock:
            if self._marked is not None:
                self._marked.setdefault(fb.tenant_id, set()).add(fb.memory_id)
        return bool(self.writer.write(facts, [fb], "api" if outbox else "remote"))

    def _marked_ids(self, tenant_id: str) -> set[str]:
        with self._lock:
            if self._marked is None:
                marked: dict[str, set[str]] = {}
                for t, m in self.duck.query(
                        "SELECT DISTINCT tenant_id, memory_id FROM feedback"):
                    marked.setdefault(str(t), set()).add(str(m))
                self._marked = marked
            return self._marked.get(tenant_id, set())

    def for_memories(self, tenant_id: str,
                     memory_ids: Sequence[str]) -> dict[str, MemoryFeedback]:
        """The verdicts on these memories (only those that have any)."""
        marked = self._marked_ids(tenant_id)
        ids = [i for i in memory_ids if i in marked]
        if not ids:
            return {}
        out: dict[str, MemoryFeedback] = {}
        for mid, verdict, origin, vec, query, machine in self.duck.query(
                "SELECT memory_id, verdict, origin_node, query_vector, query, machine_id "
                "FROM feedback WHERE tenant_id = ? AND list_contains(?, memory_id)",
                [tenant_id, ids]):
            mf = out.setdefault(str(mid), MemoryFeedback())
            unit = None
            if vec is not None:
                v = np.asarray(vec, dtype=np.float32)
                unit = v / max(float(np.linalg.norm(v)), 1e-9)
            if verdict == Verdict.FIXED.value:
                mf.confirmations += 1
                mf.plants.add(str(origin).split("/", 1)[0])  # "site/node": one per plant
                if unit is not None:
                    mf.confirmed.append(unit)
                if query:  # the codes ranking's profile() reads of a query
                    codes = find_codes(str(query))
                    mf.codes.update((machine, c) for c in codes + find_parts(str(query), codes))
            elif unit is not None:
                mf.rejections.append(unit)
        return out

    def entries(self, tenant_id: str, memory_id: str) -> list[Feedback]:
        """Every verdict on one memory, oldest first (who and when)."""
        rows = self.duck.query_dicts(
            "SELECT tenant_id, id, memory_id, verdict, query, machine_id, author, "
            "origin_node, created_at FROM feedback WHERE tenant_id = ? AND memory_id = ? "
            "ORDER BY created_at, id", [tenant_id, memory_id])
        return [Feedback(**{**r, "verdict": Verdict(r["verdict"])}) for r in rows]
