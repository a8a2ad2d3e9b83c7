"""The kinds of fact the :class:`~rae_edge.write.writer.Writer` stores.

Each is a small object built per write with what that write knows (an incident's vectors
embedded beforehand, how to describe it in a push, a remote correction's origin). A new
kind (machine alarms, "this fixed it" feedback) is one more class here with the same six
methods; the writer's steps and their order stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import duckdb

from rae_edge.push_kinds import (
    CorrectionPush,
    CorrectionView,
    IncidentPush,
    IncidentView,
    PushBody,
)
from rae_edge.store.changes import Touch
from rae_edge.store.duck import DuckStore
from rae_edge.store.outbox import OutboxMessage
from rae_edge.write.writer import IndexPort
from rae_sync.domain import Correction, Feedback, Incident
from rae_sync.messages import CorrectionMsg, FeedbackMsg, IncidentMsg, NodeRef


@dataclass(frozen=True)
class IncidentFacts:
    """Incidents (same content once: their id derives from it).

    ``vectors`` gives embeddings made beforehand (the API embeds while DuckDB stores);
    ``announce`` builds the push of one new incident (``None``: no per-incident push, as
    for a bulk ingest, whose job announces each machine's newest once it is done);
    ``announce_many`` builds them for a list of new incidents at once (one lookup for
    all: a bulk write's pushes; used instead of ``announce`` when given);
    ``max_announced`` bounds the pushes of one write."""

    vectors: Callable[[], Mapping[str, Sequence[float]]] | None = None
    announce: Callable[[Incident, Mapping[str, Sequence[float]]], PushBody | None] | None = None
    announce_many: Callable[[Sequence[Incident], Mapping[str, Sequence[float]]],
                            Sequence[PushBody | None]] | None = None
    max_announced: int = 100
    refresh: bool = True
    progress: Callable[[int], None] | None = None
    name: str = "incident"
    to_outbox: bool = True

    def ids(self, items: Sequence[Incident]) -> tuple[str, ...]:
        return tuple(i.id for i in items)

    def drifts(self, cur: duckdb.DuckDBPyConnection, stored: Sequence[Incident]) -> bool:
        # Drift counts corrections of incidents: a new incident changes it only when a
        # correction already names it (one that arrived before its target). One indexed
        # lookup instead of a full recompute on every incident.
        if not stored:
            return False
        hit = cur.execute(
            "SELECT 1 FROM corrections WHERE tenant_id = ? AND list_contains(?, target_id) "
            "LIMIT 1", [stored[0].tenant_id, [i.id for i in stored]]).fetchone()
        return hit is not None or len({i.tenant_id for i in stored}) > 1

    def tenants(self, items: Sequence[Incident]) -> list[str]:
        return sorted({i.tenant_id for i in items})

    def touches(self, stored: Sequence[Incident]) -> list[Touch]:
        return [(i.tenant_id, i.machine_id) for i in stored]  # each one's machine only

    def store(self, cur: duckdb.DuckDBPyConnection, items: Sequence[Incident]) -> list[Incident]:
        return DuckStore.store_incidents(cur, items)

    def messages(self, stored: Sequence[Incident]) -> list[OutboxMessage]:
        return [IncidentMsg(incident=i) for i in stored]

    def index(self, indexer: IndexPort, items: Sequence[Incident],
              stored: Sequence[Incident]) -> None:
        # All of them, not only the new: one stored by a run that stopped before indexing
        # is indexed now (the indexer skips the ones present). The newly stored ones
        # cannot be indexed yet (indexing follows the store), so only repeats are looked up.
        indexer.index_incidents(list(items), refresh=self.refresh, progress=self.progress,
                                vectors=self._vectors(), fresh={i.id for i in stored})

    def promised(self, stored: Sequence[Incident]) -> list[tuple[str, PushBody]]:
        # Without the most similar past incident (a lookup): what a crash right after the
        # commit still announces.
        if self.announce is None and self.announce_many is None:
            return []
        return [(i.tenant_id, IncidentPush(machine_id=i.machine_id,
                                           incident=IncidentView.of(i)))
                for i in stored[:self.max_announced]]

    def pushes(self, stored: Sequence[Incident],
               promised: Sequence[tuple[str, PushBody]]) -> list[tuple[str, PushBody]]:
        # The promised ones completed: each with its most similar past incident.
        first = stored[:self.max_announced]
        if self.announce_many is not None and first:
            bodies = self.announce_many(first, self._vectors())
            return [(i.tenant_id, b) for i, b in zip(first, bodies, strict=True)
                    if b is not None]
        if self.announce is None:
            return []
        vecs = self._vectors()
        out: list[tuple[str, PushBody]] = []
        for inc in first:
            body = self.announce(inc, vecs)
            if body is not None:
                out.append((inc.tenant_id, body))
        return out

    def _vectors(self) -> Mapping[str, Sequence[float]]:
        return self.vectors() if self.vectors is not None else {}


@dataclass(frozen=True)
class CorrectionFacts:
    """Corrections, idempotent on id: typed or voiced here (queued for central), or from
    another plant (``to_outbox=False``: never queued again; ``origin`` names its node)."""

    origin: NodeRef | None = None
    to_outbox: bool = True
    index_it: bool = True  # False: a sync agent run without the embedding model (tests)
    #: embeddings made beforehand (the API embeds a correction while DuckDB stores it)
    vectors: Callable[[], Mapping[str, Sequence[float]]] | None = None
    name: str = "correction"

    def ids(self, items: Sequence[Correction]) -> tuple[str, ...]:
        return tuple(c.id for c in items)

    def drifts(self, cur: duckdb.DuckDBPyConnection, stored: Sequence[Correction]) -> bool:
        return any(c.target_id for c in stored)  # only a correction of something counts

    def tenants(self, items: Sequence[Correction]) -> list[str]:
        return sorted({c.tenant_id for c in items})

    def touches(self, stored: Sequence[Correction]) -> list[Touch]:
        return [(t, None) for t in self.tenants(stored)]

    def store(self, cur: duckdb.DuckDBPyConnection,
              items: Sequence[Correction]) -> list[Correction]:
        return [c for c in items if DuckStore.store_correction(cur, c)]

    def messages(self, stored: Sequence[Correction]) -> list[OutboxMessage]:
        return [CorrectionMsg(correction=c) for c in stored]

    def index(self, indexer: IndexPort, items: Sequence[Correction],
              stored: Sequence[Correction]) -> None:
        # All of them: a correction stored before a crash is indexed by its next write
        # (the indexer skips rows present).
        if self.index_it:
            indexer.index_corrections(list(items), vectors=self.vectors()
                                      if self.vectors is not None else None)

    def promised(self, stored: Sequence[Correction]) -> list[tuple[str, PushBody]]:
        return [(c.tenant_id, CorrectionPush(machine_id=c.machine_id, text=c.text,
                                             target_id=c.target_id,
                                             correction=CorrectionView.of(c),
                                             origin=self.origin))
                for c in stored]

    def pushes(self, stored: Sequence[Correction],
               promised: Sequence[tuple[str, PushBody]]) -> list[tuple[str, PushBody]]:
        return list(promised)  # complete as promised: nothing to look up


@dataclass(frozen=True)
class Document:
    """An ingested file, recorded once its chunks or rows are stored (a stopped ingest
    finds no record and runs again)."""

    tenant_id: str
    id: str
    title: str
    kind: str
    sha256: str
    chunks: int


@dataclass(frozen=True)
class DocumentFacts:
    """Document records. Their chunks are indexed in bulk by the ingest before the record
    is written and manuals can change drift, so the write recomputes it."""

    name: str = "document"
    to_outbox: bool = False

    def ids(self, items: Sequence[Document]) -> tuple[str, ...]:
        return tuple(d.id for d in items)

    def drifts(self, cur: duckdb.DuckDBPyConnection, stored: Sequence[Document]) -> bool:
        return bool(stored)  # a manual's sections are what drift compares against

    def tenants(self, items: Sequence[Document]) -> list[str]:
        return sorted({d.tenant_id for d in items})

    def touches(self, stored: Sequence[Document]) -> list[Touch]:
        return [(t, None) for t in self.tenants(stored)]

    def store(self, cur: duckdb.DuckDBPyConnection, items: Sequence[Document]) -> list[Document]:
        for d in items:
            cur.execute(
                "INSERT OR REPLACE INTO documents (tenant_id, id, title, kind, sha256, chunks) "
                "VALUES (?, ?, ?, ?, ?, ?)", [d.tenant_id, d.id, d.title, d.kind, d.sha256,
                                              d.chunks])
        return list(items)

    def messages(self, stored: Sequence[Document]) -> list[OutboxMessage]:
        return []

    def index(self, indexer: IndexPort, items: Sequence[Document],
              stored: Sequence[Document]) -> None:
        return None

    def promised(self, stored: Sequence[Document]) -> list[tuple[str, PushBody]]:
        return []

    def pushes(self, stored: Sequence[Document],
               promised: Sequence[tuple[str, PushBody]]) -> list[tuple[str, PushBody]]:
        return list(promised)


@dataclass(frozen=True)
class FeedbackFacts:
    """"This fixed it" / "not relevant" verdicts (:mod:`rae_edge.memory.feedback`),
    idempotent on id: given here (queued for central) or from another plant
    (``to_outbox=False``). ``vectors`` holds the embedding of a verdict's
    query by verdict id (made before the write). Nothing to index or push: the ranking
    and the briefing read them from DuckDB."""

    vectors: Mapping[str, Sequence[float]]
    to_outbox: bool = True
    name: str = "feedback"

    def ids(self, items: Sequence[Feedback]) -> tuple[str, ...]:
        return tuple(f.id for f in items)

    def drifts(self, cur: duckdb.DuckDBPyConnection, stored: Sequence[Feedback]) -> bool:
        return False  # verdicts rank; they never amend what the manual says

    def tenants(self, items: Sequence[Feedback]) -> list[str]:
        return sorted({f.tenant_id for f in items})

    def touches(self, stored: Sequence[Feedback]) -> list[Touch]:
        return [(t, None) for t in self.tenants(stored)]

    def store(self, cur: duckdb.DuckDBPyConnection, items: Sequence[Feedback]) -> list[Feedback]:
        stored: list[Feedback] = []
        for fb in items:
            if cur.execute("SELECT 1 FROM feedback WHERE tenant_id = ? AND id = ?",
                           [fb.tenant_id, fb.id]).fetchone():
                continue
            vec = self.vectors.get(fb.id)
            cur.execute(
                "INSERT INTO feedback (tenant_id, id, memory_id, verdict, query, query_vector, "
                "machine_id, author, origin_node, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [fb.tenant_id, fb.id, fb.memory_id, fb.verdict.value, fb.query,
                 None if vec is None else [float(x) for x in vec], fb.machine_id, fb.author,
                 fb.origin_node, fb.created_at])
            stored.append(fb)
        return stored

    def messages(self, stored: Sequence[Feedback]) -> list[OutboxMessage]:
        return [FeedbackMsg(feedback=f) for f in stored]

    def index(self, indexer: IndexPort, items: Sequence[Feedback],
              stored: Sequence[Feedback]) -> None:
        return None

    def promised(self, stored: Sequence[Feedback]) -> list[tuple[str, PushBody]]:
        return []

    def pushes(self, stored: Sequence[Feedback],
               promised: Sequence[tuple[str, PushBody]]) -> list[tuple[str, PushBody]]:
        return list(promised)
