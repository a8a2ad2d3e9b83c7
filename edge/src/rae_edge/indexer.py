"""``Indexer``: turns incidents, document chunks and corrections into searchable LanceDB
rows (text, abbreviation-expanded ``search_text``, vector, model id) in batches.

Each added row's structure (codes, part numbers, components) is stored as fields in the same
call (:class:`rae_edge.memory.fields.MemoryFields`). Rows whose id is already in the store
are skipped (ids derive from content hashes, so the same content is never embedded or stored
twice). Each ``index_*`` call embeds in batches, appends, and refreshes the indexes once at
its end (or not, with ``refresh=False``, when the caller indexes many batches and calls
:meth:`Indexer.refresh` itself).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rae_edge.abbreviations import abbreviations_for
from rae_edge.ingest.codes import find_codes
from rae_edge.memory.fields import MemoryFields, incident_text
from rae_edge.store.duck import DuckStore
from rae_edge.store.lance import SCHEMA, LanceStore, sql_literal
from rae_sync.domain import Correction, DocumentChunk, Incident, MemoryKind

if TYPE_CHECKING:  # imported by the node when it loads the model
    from rae_edge.embedding import EmbeddingService

Row = dict[str, Any]
ADD_BATCH = 2048  # rows per LanceDB append (each append is a table version)
_ID_QUERY_BATCH = 500  # ids per existence query
EMBED_STEP = 256  # rows embedded between two progress reports


class Indexer:
    """Indexes memories of one node; thread-safe as far as its stores are."""

    def __init__(self, duck: DuckStore, lance: LanceStore, *,
                 abbreviations: Sequence[Path],
                 embedder: Callable[[], EmbeddingService]) -> None:
        self.duck = duck
        self.lance = lance
        self.abbreviations = abbreviations_for(abbreviations)
        self.fields = MemoryFields(duck)
        self._embedder = embedder  # a callable: the model loads on first use

    @property
    def embedder(self) -> EmbeddingService:
        return self._embedder()

    # -- rows per kind --------------------------------------------------------------
    def incident_row(self, inc: Incident) -> Row:
        return self._row(
            id=inc.id, tenant_id=inc.tenant_id, kind=MemoryKind.INCIDENT.value,
            machine_id=inc.machine_id, text=incident_text(inc), occurred_at=inc.occurred_at,
            error_codes=[inc.error_code] if inc.error_code else list(find_codes(inc.symptom)),
            source=inc.source,
        )

    def chunk_rows(self, chunk: DocumentChunk) -> list[Row]:
        """One row, or one per named machine when a chunk (a shift entry) names several,
        so the machine prefilter finds it for each (ids ``<chunk id>~<machine id>``)."""
        machines: Sequence[str | None] = chunk.machine_ids or (None,)
        rows = []
        for m in machines:
            rows.append(self._row(
                id=chunk.id if len(machines) == 1 else f"{chunk.id}~{m}",
                tenant_id=chunk.tenant_id, kind=chunk.kind.value, machine_id=m,
                text=chunk.text, occurred_at=chunk.occurred_at,
                error_codes=list(chunk.error_codes), document_id=chunk.document_id,
                page=chunk.page, section=chunk.section or None,
                source=chunk.document_title or chunk.document_id,
                heading=chunk.section,
            ))
        return rows

    def correction_row(self, c: Correction) -> Row:
        return self._row(
            id=c.id, tenant_id=c.tenant_id, kind=MemoryKind.CORRECTION.value,
            machine_id=c.machine_id, text=c.text, occurred_at=c.valid_from,
            error_codes=list(find_codes(c.text)), target_id=c.target_id,
            source=f"{c.method.value}:{c.author}",
        )

    def _row(self, *, id: str, tenant_id: str, kind: str, machine_id: str | None, text: str,
             occurred_at: datetime | None, error_codes: list[str], source: str,
             target_id: str | None = None, document_id: str | None = None,
             page: int | None = None, section: str | None = None, heading: str = "") -> Row:
        # The heading is embedded and full-text indexed with the text (it often names the
        # part or code), but ``text`` stays what the document says.
        searchable = f"{heading}\n{text}" if heading and heading not in text else text
        return {
            "id": id, "tenant_id": tenant_id, "kind": kind, "machine_id": machine_id,
            "text": text, "search_text": self.abbreviations.expand(searchable),
            "vector": None, "occurred_at": occurred_at, "error_codes": error_codes,
            "target_id": target_id, "document_id": document_id, "page": page,
            "section": section, "source": source, "model_id": None,
        }

    # -- indexing -------------------------------------------------------------------
    def index_incidents(self, incidents: Sequence[Incident], *, refresh: bool = True,
                        progress: Callable[[int], None] | None = None,
                        vectors: Mapping[str, Sequence[float]] | None = None,
                        fresh: Collection[str] = ()) -> int:
        """Indexes incidents not yet indexed; returns how many rows were added.
        ``vectors``: ids already embedded by the caller (their ``search_text`` with this
        model), so they are not embedded twice; ``fresh``: ids known not to be indexed
        (just stored for the first time), not looked up."""
        return self.index_rows([self.incident_row(i) for i in incidents], refresh=refresh,
                               progress=progress, vectors=vectors, fresh=fresh)

    def index_chunks(self, chunks: Sequence[DocumentChunk], *, refresh: bool = True,
                     progress: Callable[[int], None] | None = None) -> int:
        """Indexes document chunks (manual sections, shift entries, work orders)."""
        return self.index_rows([r for c in chunks for r in self.chunk_rows(c)],
                               refresh=refresh, progress=progress)

    def index_corrections(self, corrections: Sequence[Correction], *,
                          refresh: bool = True,
                          vectors: Mapping[str, Sequence[float]] | None = None) -> int:
        """Indexes corrections (reflective memory); call after they are in DuckDB.
        ``vectors``: the ones the caller embedded already (by id)."""
        return self.index_rows([self.correction_row(c) for c in corrections], refresh=refresh,
                               vectors=vectors)

    def index_rows(self, rows: Sequence[Row], *, refresh: bool = True,
                   progress: Callable[[int], None] | None = None,
                   vectors: Mapping[str, Sequence[float]] | None = None,
                   fresh: Collection[str] = ()) -> int:
        """Embeds ``search_text`` of the rows not stored yet and appends them.

        ``progress`` is called with the number of rows handled after each batch;
        ``vectors`` holds rows (by id) the caller embedded already.
        """
        new = self.new_rows(rows, fresh)
        if vectors:
            for r in new:
                vec = vectors.get(str(r["id"]))
                if vec is not None:
                    r["vector"], r["model_id"] = vec, self.embedder.model_id
        if progress and len(rows) > len(new):
            progress(len(rows) - len(new))
        lance = self.lance
        for start in range(0, len(new), ADD_BATCH):
            batch = new[start : start + ADD_BATCH]
            for sub in range(0, len(batch), EMBED_STEP):
                part = batch[sub : sub + EMBED_STEP]
                self._embed_rows(part)
                if progress:
                    progress(len(part))
            lance.add(batch)
            # Codes, part numbers and components as fields, for every memory whatever its
            # source (exact matching in search, "same error code" in the briefing).
            self.fields.write(batch)
        if new and refresh:
            lance.refresh_indexes()
        return len(new)

    def _embed_rows(self, rows: Sequence[Row]) -> None:
        # Logs repeat themselves ("REPLACED FUEL SERVO"): each distinct text is embedded once.
        embedder = self.embedder
        rows = [r for r in rows if r.get("vector") is None]  # not embedded by the caller
        if not rows:
            return
        texts = list(dict.fromkeys(str(r["search_text"]) for r in rows))
        vectors = dict(zip(texts, embedder.embed(texts), strict=True))
        for r in rows:
            r["vector"] = vectors[str(r["search_text"])]
            r["model_id"] = embedder.model_id

    def reindex(self, *, progress: Callable[[int], None] | None = None,
                batch: int = 1024) -> int:
        """Re-embeds every row whose ``model_id`` is not the current model's (and redoes its
        abbreviation expansion); returns how many rows were re-embedded.

        Rows are rewritten in place with ``merge_insert`` on ``id`` (atomic per batch: a
        stop halfway leaves each row with either its old or its new vector, never none).
        """
        lance = self.lance
        current = self.embedder.model_id
        where = f"model_id IS NULL OR model_id != {sql_literal(current)}"
        columns = [f.name for f in SCHEMA if f.name != "vector"]
        done = 0
        seen: set[tuple[str, str]] = set()
        while True:
            rows = lance.rows(where, columns, batch)
            if not rows:
                break
            keys = {(str(r["tenant_id"]), str(r["id"])) for r in rows}
            if keys & seen:  # a row that was rewritten still looks stale: do not loop forever
                raise RuntimeError("reindex: rewritten rows still carry the old model id")
            seen |= keys
            for r in rows:
                searchable = (f"{r['section']}\n{r['text']}"
                              if r.get("section") and r["section"] not in r["text"]
                              else r["text"])
                r["search_text"] = self.abbreviations.expand(searchable)
            self._embed_rows(rows)
            table = pa.Table.from_pylist(rows, schema=SCHEMA)
            lance.rewrite(table)
            done += len(rows)
            if progress:
                progress(len(rows))
        if done:
            lance.refresh_indexes(force=True)
        return done

    def stale_count(self) -> int:
        """Rows embedded by another model than the current one."""
        current = self.embedder.model_id
        return self.lance.count(f"model_id IS NULL OR model_id != {sql_literal(current)}")

    def refresh(self) -> None:
        """Folds new rows into the indexes and compacts (after ``refresh=False`` calls)."""
        self.lance.refresh_indexes(force=True)

    def new_rows(self, rows: Sequence[Row], fresh: Collection[str] = ()) -> list[Row]:
        """The rows whose (tenant, id) is neither stored nor earlier in ``rows``; ids in
        ``fresh`` are known not to be stored (no lookup: under load each lookup scanned the
        id column of every fragment, queued on LanceDB's two worker threads)."""
        unique: dict[tuple[str, str], Row] = {}
        for r in rows:
            unique.setdefault((r["tenant_id"], r["id"]), r)
        by_tenant: dict[str, list[str]] = {}
        for tenant, rid in unique:
            if rid not in fresh:
                by_tenant.setdefault(tenant, []).append(rid)
        present: set[tuple[str, str]] = set()
        for tenant, ids in by_tenant.items():
            for start in range(0, len(ids), _ID_QUERY_BATCH):
                found = self.lance.existing_ids(tenant, ids[start : start + _ID_QUERY_BATCH])
                present.update((tenant, i) for i in found)
        return [r for key, r in unique.items() if key not in present]
