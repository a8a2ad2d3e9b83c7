"""``MemoryService`` (``node.memory``): what the tablet API and the workers call.

Reads: briefings, hybrid search, context packs; ``fields`` (structure extracted from
each memory) and ``feedback`` ("this fixed it" / "not relevant" verdicts) feed the
ranking. Writes go through the node's one
:class:`~rae_edge.write.Writer` (stored with the outbox message in one transaction, sync
woken, indexed, pushed, drift recomputed): incidents (pushed with the most similar past
incident) and corrections. Tenants are always passed in by the caller (the
API takes it from the token, never from the request).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rae_edge import qr
from rae_edge.abbreviations import abbreviations_for
from rae_edge.config import EdgeSettings
from rae_edge.errors import InvalidInputError
from rae_edge.memory.briefing import BriefingBuilder
from rae_edge.memory.context import ContextPacker
from rae_edge.memory.feedback import FeedbackService
from rae_edge.memory.fields import MemoryFields
from rae_edge.memory.jobs import DocumentJobs
from rae_edge.memory.models import Briefing, ContextPack, SearchHit, SearchResult
from rae_edge.memory.search import Fusion, HybridSearch, Mode
from rae_edge.push_kinds import (
    BriefingPush,
    CorrectionView,
    IncidentPush,
    IncidentView,
    SimilarIncident,
)
from rae_edge.store.lance import in_list, sql_literal
from rae_edge.write.facts import CorrectionFacts, IncidentFacts
from rae_edge.write.targets import check_machine, check_target
from rae_sync.domain import Correction, CorrectionMethod, Incident, Machine

if TYPE_CHECKING:
    from rae_edge.drift import DriftMonitor
    from rae_edge.embedding import EmbeddingService
    from rae_edge.ingest.pipeline import IngestTarget
    from rae_edge.push import PushBus
    from rae_edge.store.duck import DuckStore
    from rae_edge.store.lance import LanceStore
    from rae_edge.write.writer import Writer

log = logging.getLogger(__name__)

MAX_K = 100
MAX_ANNOUNCED = 100  # new incidents pushed one by one per request; the rest are stored
# Up to this many new incidents, each is looked up by vector search (the pass of
# similar_many reads all of their machines' rows: worth it for a bulk write, not for one).
SIMILAR_ONE_BY_ONE = 4
SIMILAR_SCAN_MAX = 50_000  # stored incidents read (~75 MiB of vectors) for one request's pushes


class IncidentRows(Protocol):
    """What the memory service needs of the indexer: an incident's or a correction's row
    as it is stored (its ``search_text`` is what gets embedded)."""

    def incident_row(self, inc: Incident) -> dict[str, Any]: ...

    def correction_row(self, c: Correction) -> dict[str, Any]: ...


class MemoryService:
    """The memory service of one node; the node's composition root passes its parts."""

    def __init__(self, duck: DuckStore, lance: LanceStore, *, settings: EdgeSettings,
                 push: PushBus, writer: Writer, indexer: Callable[[], IncidentRows],
                 embedder: Callable[[], EmbeddingService], drift: DriftMonitor,
                 ingest_target: Callable[[str], IngestTarget],
                 fusion: Fusion | None = None) -> None:
        self.duck = duck
        self.lance = lance
        self.settings = settings
        self.push = push
        self.writer = writer
        self._indexer = indexer  # callables: the embedding model loads on first use
        self._embedder = embedder
        self._ingest_target = ingest_target
        abbreviations = abbreviations_for(settings.abbreviations)
        self.fields = MemoryFields(duck)
        ns = settings.node
        self.feedback = FeedbackService(duck, lance, writer,
                                        origin_node=f"{ns.site_id}/{ns.node_id}",
                                        abbreviations=abbreviations, embedder=embedder)
        self.searcher = HybridSearch(duck, lance, abbreviations=abbreviations,
                                     embedder=embedder, feedback=self.feedback,
                                     fields=self.fields, fusion=fusion)
        self.briefings = BriefingBuilder(duck, lance,
                                         feedback=self.feedback, drift=drift)
        self.packer = ContextPacker(duck, self.searcher, embedder=embedder)

    @cached_property
    def jobs(self) -> DocumentJobs:
        """Document ingest jobs; those a previous run left unfinished are queued again."""
        jobs = DocumentJobs(self.duck, self.settings.data_dir / "uploads",
                            target=self._ingest_target,
                            announce=lambda inc, n: self.announce_incident(inc, new_count=n))
        jobs.resume()
        return jobs

    # -- machines ------------------------------------------------------------------------
    def machine(self, tenant_id: str, code: str) -> Machine:
        """The machine a QR payload or id names (404 when unknown in this tenant)."""
        return qr.resolve(self.duck, tenant_id, code, self.settings.qr)

    def require_machine(self, tenant_id: str, machine_id: str) -> Machine:
        check_machine(self.duck, tenant_id, machine_id)
        m = self.duck.get_machine(tenant_id, machine_id)
        assert m is not None
        return m

    # -- briefing ------------------------------------------------------------------------
    def briefing(self, tenant_id: str, code: str, *, as_of: datetime | None = None,
                 error_code: str | None = None, publish: bool = True) -> Briefing:
        """The briefing of the machine ``code`` names; also pushed to its watchers."""
        machine = self.machine(tenant_id, code)
        error_code = (error_code or "").strip() or None
        b = self.briefings.build(tenant_id, machine, as_of=as_of, error_code=error_code)
        if publish:
            self.push.send_soon(tenant_id, BriefingPush(
                machine_id=machine.id, machine_name=machine.name, summary=b.summary,
                error_code=error_code, incident_count=b.incident_count,
                drift_alerts=len(b.drift_alerts)))
        return b

    # -- search --------------------------------------------------------------------------
    def search(self, tenant_id: str, q: str, *, machine_id: str | None = None,
               kind: str | None = None, k: int = 10, as_of: datetime | None = None,
               mode: Mode = "hybrid") -> SearchResult:
        if not 1 <= k <= MAX_K:
            raise InvalidInputError(f"k must be between 1 and {MAX_K}")
        kinds = [x.strip() for x in kind.split(",") if x.strip()] if kind else []
        norm, cands = self.searcher.candidates(tenant_id, q, machine_id=machine_id,
                                               kinds=kinds, k=k, as_of=as_of, mode=mode)
        hits = []
        for c in cands[:k]:
            r = c.row
            hits.append(SearchHit(
                id=str(r["id"]), kind=str(r["kind"]), text=str(r["text"]),
                machine_id=r.get("machine_id"), score=round(c.score, 6),
                occurred_at=r.get("occurred_at"), source=r.get("source"),
                target_id=r.get("target_id"), document_id=r.get("document_id"),
                section=r.get("section"), page=r.get("page"),
                error_codes=list(r.get("error_codes") or []),
                superseded_by=c.superseded_by, ranks=c.ranks or {}))
        return SearchResult(query=q, normalized_query=norm, hits=hits)

    def context(self, tenant_id: str, q: str, *, machine_id: str | None = None,
                budget_tokens: int = 4000, as_of: datetime | None = None) -> ContextPack:
        return self.packer.pack(tenant_id, q, machine_id=machine_id,
                                budget_tokens=budget_tokens, as_of=as_of)

    # -- incidents -----------------------------------------------------------------------
    def add_incidents(self, tenant_id: str, incidents: Sequence[Incident],
                      ) -> tuple[list[str], list[Incident]]:
        """Stores incidents (same content once) through the node's writer: queued for
        central, indexed, each new one pushed with the most similar past incident of its
        machine. Returns (all ids, the new ones)."""
        for machine_id in sorted({i.machine_id for i in incidents}):
            self.require_machine(tenant_id, machine_id)
        if any(i.tenant_id != tenant_id for i in incidents):
            raise InvalidInputError("incidents of another tenant")
        # The texts are embedded (for the index and the similar-incident lookup) while
        # DuckDB stores the rows: both release the GIL. Embedded once for both.
        with ThreadPoolExecutor(1) as pool:
            vectors = pool.submit(self._embed_incidents, list(incidents))
            new = self.writer.write(
                IncidentFacts(vectors=vectors.result, announce_many=self.incident_pushes,
                              max_announced=MAX_ANNOUNCED), incidents, "api")
        return [i.id for i in incidents], new

    def _embed_incidents(self, incidents: Sequence[Incident]) -> dict[str, list[float]]:
        """Each incident's vector as the indexer will store it (its ``search_text``)."""
        if not incidents:
            return {}
        texts = [self._indexer().incident_row(i)["search_text"] for i in incidents]
        return {i.id: v.tolist() for i, v in zip(incidents, self._embedder().embed(texts),
                                                 strict=True)}

    def similar_incident(self, inc: Incident,
                         vector: Sequence[float] | None = None) -> dict[str, Any] | None:
        """:meth:`similar` as JSON (the form this method always returned)."""
        found = self.similar(inc, vector)
        return found.model_dump(mode="json") if found is not None else None

    def similar(self, inc: Incident,
                vector: Sequence[float] | None = None) -> SimilarIncident | None:
        """The most similar earlier incident of the same machine, with what fixed it (the
        latest correction's text when one amends it)."""
        if vector is None:
            vector = self._embed_incidents([inc])[inc.id]
        vec = vector
        where = (f"tenant_id = {sql_literal(inc.tenant_id)} AND kind = 'incident' AND "
                 f"machine_id = {sql_literal(inc.machine_id)} AND id != {sql_literal(inc.id)}"
                 f" AND occurred_at <= {sql_literal(inc.occurred_at)}")
        rows = self.lance.vector_search(list(vec), where, 1, ["id"])
        if not rows:
            return None
        past = self.duck.get_incident(inc.tenant_id, str(rows[0]["id"]))
        if past is None:
            return None
        cors = self.duck.corrections_for_targets(inc.tenant_id, [past.id]).get(past.id, [])
        return SimilarIncident(
            **IncidentView.of(past).model_dump(),
            similarity=round(1.0 - float(rows[0]["_distance"]), 4),
            corrections=tuple(CorrectionView.of(c) for c in cors),
            fix=cors[-1].text if cors else past.action,
            superseded_by=tuple(c.id for c in cors))

    def similar_many(self, incidents: Sequence[Incident],
                     vectors: Mapping[str, Sequence[float]],
                     ) -> dict[str, SimilarIncident | None]:
        """:meth:`similar` of each incident (by id), for a bulk write's pushes: one read of
        the stored incidents of their machines and an exact cosine ranking in numpy, one
        query for the past incidents found and one for their corrections, instead of three
        queries per incident. Machines with more than :data:`SIMILAR_SCAN_MAX` stored
        incidents between them are looked up one by one (the vector index)."""
        out: dict[str, SimilarIncident | None] = {}
        by_tenant: dict[str, list[Incident]] = {}
        for inc in incidents:
            by_tenant.setdefault(inc.tenant_id, []).append(inc)
        missing = [i for i in incidents if vectors.get(i.id) is None]
        vecs = {**vectors, **self._embed_incidents(missing)}
        for tenant, incs in by_tenant.items():
            out.update(self._similar_of_tenant(tenant, incs, vecs))
        return out

    def _similar_of_tenant(self, tenant: str, incs: Sequence[Incident],
                           vectors: Mapping[str, Sequence[float]],
                           ) -> dict[str, SimilarIncident | None]:
        machines = sorted({i.machine_id for i in incs})
        where = (f"tenant_id = {sql_literal(tenant)} AND kind = 'incident' AND "
                 f"{in_list('machine_id', machines)}")
        table = self.lance.arrow_rows(where, ["id", "machine_id", "occurred_at", "vector"],
                                      SIMILAR_SCAN_MAX + 1)
        if not table.num_rows:
            return dict.fromkeys((i.id for i in incs), None)
        flat = table.column("vector").combine_chunks().flatten().to_numpy()
        if table.num_rows > SIMILAR_SCAN_MAX or flat.size % table.num_rows:
            return {i.id: self.similar(i, vectors[i.id]) for i in incs}  # (or a null vector)
        mat = flat.reshape(table.num_rows, -1)
        ids = np.asarray(table.column("id").to_pylist(), dtype=object)
        when = table.column("occurred_at").to_numpy()  # datetime64[us], UTC
        of_machine: dict[str, list[int]] = {}
        for k, m in enumerate(table.column("machine_id").to_pylist()):
            of_machine.setdefault(str(m), []).append(k)
        best: dict[str, tuple[str, float]] = {}
        for inc in incs:
            q = np.asarray(vectors[inc.id], dtype=np.float32)
            at = np.datetime64(inc.occurred_at.astimezone(UTC).replace(tzinfo=None), "us")
            # the same rows as the one-by-one lookup: its machine, earlier or at once, not it
            rows = np.asarray(of_machine.get(inc.machine_id, []), dtype=np.int64)
            rows = rows[(when[rows] <= at) & (ids[rows] != inc.id)]
            if not len(rows):
                continue
            sub = mat[rows]
            cos = (sub @ q) / np.clip(np.linalg.norm(sub, axis=1) * np.linalg.norm(q), 1e-12,
                                      None)
            top = int(np.argmax(cos))
            best[inc.id] = (str(ids[rows[top]]), float(cos[top]))
        past_ids = sorted({p for p, _ in best.values()})
        past = {i.id: i for i in self.duck.incidents_by_id(tenant, past_ids)}
        cors = self.duck.corrections_for_targets(tenant, past_ids)
        out: dict[str, SimilarIncident | None] = {}
        for inc in incs:
            hit = best.get(inc.id)
            p = past.get(hit[0]) if hit else None
            if hit is None or p is None:
                out[inc.id] = None
                continue
            cs = cors.get(p.id, [])
            out[inc.id] = SimilarIncident(
                **IncidentView.of(p).model_dump(), similarity=round(hit[1], 4),
                corrections=tuple(CorrectionView.of(c) for c in cs),
                fix=cs[-1].text if cs else p.action, superseded_by=tuple(c.id for c in cs))
        return out

    def incident_pushes(self, incidents: Sequence[Incident],
                        vectors: Mapping[str, Sequence[float]]) -> list[IncidentPush]:
        """The pushes of new incidents, each with its most similar past incident: one
        vector search each for a few (the incident a technician or an alarm just logged),
        one pass over their machines' rows for a bulk write (:meth:`similar_many`)."""
        if len(incidents) <= SIMILAR_ONE_BY_ONE:
            return [self._incident_push(i, vectors) for i in incidents]
        found = self.similar_many(incidents, vectors)
        return [IncidentPush(machine_id=i.machine_id, incident=IncidentView.of(i),
                             similar=found.get(i.id), new_count=1) for i in incidents]

    def _incident_push(self, inc: Incident, vectors: Mapping[str, Sequence[float]],
                       new_count: int = 1) -> IncidentPush:
        return IncidentPush(machine_id=inc.machine_id, incident=IncidentView.of(inc),
                            similar=self.similar(inc, vectors.get(inc.id)),
                            new_count=new_count)

    def announce_incident(self, inc: Incident, new_count: int = 1,
                          vector: Sequence[float] | None = None) -> int:
        """Pushes a new incident (with the most similar past one) to its machine's
        watchers; returns the push cursor. (An ingest job announces each machine's newest
        new incident this way once it is done.)"""
        vectors = {inc.id: vector} if vector is not None else {}
        return self.push.send(inc.tenant_id,
                                   self._incident_push(inc, vectors, new_count))

    # -- corrections -----------------------------------------------------------------------
    def add_correction(self, tenant_id: str, *, machine_id: str, text: str, author: str,
                       target_id: str | None = None,
                       method: CorrectionMethod = CorrectionMethod.TYPED,
                       audio_sha256: str | None = None) -> Correction:
        """A correction from this node (typed or voiced): checked, then written (stored
        with its outbox message, indexed, pushed)."""
        check_machine(self.duck, tenant_id, machine_id)
        text = " ".join(text.split())
        if not text:
            raise InvalidInputError("empty correction: text must say what was learnt")
        self.check_target(tenant_id, machine_id, target_id)
        c = Correction(tenant_id=tenant_id, machine_id=machine_id, text=text, author=author,
                       target_id=target_id or None, method=method,
                       origin_node=self.settings.node.node_id, audio_sha256=audio_sha256)
        return self.record_correction(c)

    def record_correction(self, c: Correction, *, outbox: bool = True,
                          publish: bool = True) -> Correction:
        """Writes a correction made on this node (idempotent on id) through the node's
        writer. ``outbox=False`` writes it as one from another plant (no outbox row);
        ``publish`` is kept for callers of the old signature: every new correction is
        pushed."""
        del publish  # the writer pushes every new fact: one path for every origin
        # Embedded (for the index) while DuckDB stores and the push goes out, as incidents
        # are: the answer waits for the index, and the embedding is most of it.
        with ThreadPoolExecutor(1) as pool:
            vectors = pool.submit(self._embed_corrections, [c])
            self.writer.write(CorrectionFacts(to_outbox=outbox, vectors=vectors.result), [c],
                              c.method.value if outbox else "remote")
        return c

    def _embed_corrections(self, corrections: Sequence[Correction],
                           ) -> dict[str, list[float]]:
        """Each correction's vector as the indexer will store it (its ``search_text``)."""
        texts = [self._indexer().correction_row(c)["search_text"] for c in corrections]
        return {c.id: v.tolist() for c, v in zip(corrections, self._embedder().embed(texts),
                                                 strict=True)}

    def check_target(self, tenant_id: str, machine_id: str, target_id: str | None) -> None:
        """The one rule of :mod:`rae_edge.write.targets` (typed and voiced alike)."""
        check_target(self.duck, self.lance, tenant_id, machine_id, target_id)
