"""The ingest entry point used by ``rae-edge ingest`` and the ``POST /documents`` job.

:func:`ingest_paths` takes files and folders, works out each file's kind, parses it,
stores what is new (incidents in DuckDB, every searchable row in LanceDB with its vector)
and returns an :class:`IngestResult`: added, skipped as duplicate, rejected with reason.
A bad file or row is rejected alone; everything else is still ingested.

Idempotence: a file already ingested with the same bytes, kind, machine and mapping is
recognised from the ``documents`` table and skipped as a whole; otherwise incidents are
deduplicated by content hash in DuckDB and chunks by content-hash id in LanceDB, so
re-ingesting changed files stores only what changed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rae_edge.config import EdgeSettings
from rae_edge.errors import InvalidInputError, NotFoundError
from rae_edge.ingest.codes import find_codes
from rae_edge.ingest.mapping import ColumnMapping, load_mapping
from rae_edge.ingest.pdf import parse_pdf
from rae_edge.ingest.result import (
    FileResult,
    IngestResult,
    Progress,
    ProgressFn,
    RejectedFileError,
    Rejection,
)
from rae_edge.ingest.shift import parse_shift
from rae_edge.ingest.tables import parse_table
from rae_edge.store.duck import DuckStore
from rae_edge.write.facts import Document, DocumentFacts, IncidentFacts
from rae_edge.write.writer import IndexPort, Writer
from rae_sync.domain import DocumentChunk, Incident, Machine, MemoryKind, content_hash

log = logging.getLogger(__name__)

Kind = Literal["manual", "errors", "shift", "workorders"]
KINDS: tuple[Kind, ...] = ("manual", "errors", "shift", "workorders")
SUFFIX_KIND: dict[str, Kind] = {
    ".pdf": "manual", ".csv": "errors", ".jsonl": "errors",
    ".ndjson": "errors", ".txt": "shift", ".md": "shift", ".markdown": "shift",
}
_TABLE_SUFFIXES = {".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".txt"}  # with a mapping
_CHUNK_BATCH = 512  # chunks parsed, then embedded and stored, per step of a big file


class IngestIndexer(IndexPort, Protocol):
    """What ingest needs of the indexer (beyond the writer's): chunk rows, the rows not
    stored yet, a bulk append and the full-text refresh at the end of a run."""

    def chunk_rows(self, chunk: DocumentChunk) -> list[dict[str, Any]]: ...

    def new_rows(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]: ...

    def index_rows(self, rows: Sequence[dict[str, Any]], *, refresh: bool = True) -> int: ...

    def refresh(self) -> None: ...


class IngestTarget(Protocol):
    """Where :func:`ingest_paths` stores: a tenant's stores, writer and indexer (the built
    node, or an :class:`IngestContext` for another tenant of it)."""

    @property
    def tenant_id(self) -> str: ...

    @property
    def duck(self) -> DuckStore: ...

    @property
    def settings(self) -> EdgeSettings: ...

    @property
    def writer(self) -> Writer: ...

    @property
    def indexer(self) -> IngestIndexer: ...


@dataclass(frozen=True)
class IngestContext:
    """An :class:`IngestTarget` made of its parts (the document jobs ingest for the tenant
    of each upload)."""

    tenant_id: str
    duck: DuckStore
    settings: EdgeSettings
    writer: Writer
    indexer: IngestIndexer


@dataclass
class _Run:
    node: IngestTarget
    kind: Kind | None
    machine_id: str | None
    mapping: ColumnMapping | None
    mapping_key: str
    outbox: bool
    zone: ZoneInfo
    progress: ProgressFn | None
    files_total: int
    files_done: int = 0
    items_done: int = 0
    items_total: int = 0
    path: str = ""

    def emit(self, advance: int = 0, more_total: int = 0) -> None:
        self.items_done += advance
        self.items_total += more_total
        if self.progress:
            self.progress(Progress(self.path, self.files_done, self.files_total,
                                   self.items_done, self.items_total))


def expand_paths(paths: Iterable[Path]) -> tuple[list[Path], list[Rejection]]:
    """Files under ``paths`` (folders recursively, hidden names skipped), and the paths
    that do not exist."""
    files: list[Path] = []
    missing: list[Rejection] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(
                f for f in p.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            ))
        elif p.is_file():
            files.append(p)
        else:
            missing.append(Rejection(str(p), "no such file or folder"))
    return files, missing


def detect_kind(path: Path, kind: Kind | None, mapping: ColumnMapping | None) -> Kind:
    """The kind of a file: as given, else from its mapping and extension."""
    suffix = path.suffix.lower()
    if kind is not None:
        return kind
    if mapping is not None and suffix in _TABLE_SUFFIXES:
        return mapping.kind
    if suffix in SUFFIX_KIND:
        return SUFFIX_KIND[suffix]
    raise RejectedFileError(
        f"unknown format {suffix or '(no extension)'!r}: ingest takes .pdf (manuals), "
        f".csv/.jsonl (error logs, work orders) and .txt/.md (shift reports); "
        f"or name the kind with --kind"
    )


def ingest_paths(
    node: IngestTarget,
    paths: Sequence[Path | str],
    *,
    kind: Kind | None = None,
    machine_id: str | None = None,
    mapping: ColumnMapping | Path | None = None,
    progress: ProgressFn | None = None,
    titles: Mapping[Path, str] | None = None,
    outbox: bool | None = None,
    timezone: str = "UTC",
) -> IngestResult:
    """Ingests files and folders (recursively) into ``node``; returns what happened.

    - ``kind``: ``manual`` (PDF), ``errors`` (CSV/JSON lines), ``shift`` (text/Markdown),
      ``workorders`` (CSV); when None, from the mapping or the file extension.
    - ``machine_id``: the machine every item belongs to (must be registered); tables may
      instead name machines per row through the mapping.
    - ``mapping``: a :class:`ColumnMapping` or a YAML/JSON mapping file, for tables.
    - ``progress``: called with a :class:`Progress` as rows and chunks are stored.
    - ``titles``: display titles per path (an upload's original file name).
    - ``outbox``: queue new incidents for sync to central; default: when sync is on
      (``EdgeSettings.sync_on``).
    - ``timezone``: zone of shift-report times (tables take theirs from the mapping).

    Raises :class:`InvalidInputError` / :class:`NotFoundError` only for a bad call (an
    unknown ``kind``, an unreadable mapping, an unregistered ``machine_id``); every
    problem with a file or row is in the result's ``rejected`` list instead.
    """
    if kind is not None and kind not in KINDS:
        raise InvalidInputError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")
    if machine_id is not None and node.duck.get_machine(node.tenant_id, machine_id) is None:
        raise NotFoundError(
            f"unknown machine {machine_id!r}: register it first (POST /machines)")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInputError(f"unknown time zone {timezone!r}") from exc
    if isinstance(mapping, Path):
        mapping = load_mapping(mapping)
    if outbox is None:
        outbox = node.settings.sync_on
    files, missing = expand_paths(Path(p) for p in paths)
    run = _Run(node, kind, machine_id, mapping,
               mapping.model_dump_json() if mapping else "", outbox, zone, progress, len(files))
    result = IngestResult()
    for rej in missing:
        result.files.append(FileResult(path=rej.source, kind="?", rejected=[rej]))
    added_any = False
    for path in files:
        run.path = str(path)
        run.emit()
        title = (titles or {}).get(path) or path.name
        try:
            fr = _ingest_file(run, path, title)
        except RejectedFileError as exc:
            fr = FileResult(path=str(path), kind=kind or "?",
                            rejected=[Rejection(str(path), str(exc))])
        except Exception as exc:  # one file's failure must not stop the others
            log.exception("ingest of %s failed", path)
            fr = FileResult(path=str(path), kind=kind or "?", rejected=[Rejection(
                str(path), f"failed while storing: {type(exc).__name__}: {exc}")])
        added_any = added_any or fr.added > 0
        result.files.append(fr)
        run.files_done += 1
        run.emit()
    if added_any:
        node.indexer.refresh()
    return result


def _document_id(path: Path, kind: str, run: _Run) -> tuple[str, str]:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    sha = h.hexdigest()
    key = content_hash(run.node.tenant_id, sha, kind, run.machine_id, run.mapping_key,
                       run.zone.key)
    return "doc_" + key[:24], sha


def _ingest_file(run: _Run, path: Path, title: str) -> FileResult:
    kind = detect_kind(path, run.kind, run.mapping)
    try:
        doc_id, sha = _document_id(path, kind, run)
    except OSError as exc:
        raise RejectedFileError(f"cannot read the file ({exc.strerror or exc})") from exc
    fr = FileResult(path=str(path), kind=kind, document_id=doc_id)
    duck = run.node.duck
    tenant = run.node.tenant_id
    known = duck.query("SELECT chunks FROM documents WHERE tenant_id = ? AND id = ?",
                       [tenant, doc_id])
    if known:
        fr.duplicates = int(known[0][0])
        run.emit(fr.duplicates, fr.duplicates)
        return fr
    if kind in ("errors", "workorders"):
        items = _ingest_table(run, path, kind, title, fr)
    elif kind == "manual":
        items = _ingest_manual(run, path, doc_id, title, fr)
    else:
        items = _ingest_shift(run, path, doc_id, title, fr)
    # Recorded last (a stopped ingest finds no record and runs again); drift follows.
    run.node.writer.write(DocumentFacts(), [Document(tenant, doc_id, title, kind, sha, items)],
                          "ingest")
    return fr


def _ingest_table(run: _Run, path: Path, kind: Literal["errors", "workorders"], title: str,
                  fr: FileResult) -> int:
    node = run.node
    parsed = parse_table(path, tenant_id=node.tenant_id, mapping=run.mapping, kind=kind,
                         machine_id=run.machine_id, title=title)
    fr.rejected.extend(parsed.rejected)
    run.emit(len(parsed.rejected), parsed.rows)
    incidents = parsed.incidents
    known = {m.id for m in node.duck.list_machines(node.tenant_id)}
    unknown = {mid: name for mid, name in parsed.machines.items() if mid not in known}
    create = run.mapping.create_machines if run.mapping else True
    if unknown and create:
        node.duck.upsert_machines([
            Machine(tenant_id=node.tenant_id, id=mid, name=name[:200], qr_code=mid,
                    site=node.settings.node.site_id)
            for mid, name in sorted(unknown.items())])
        fr.machines_created = sorted(unknown)
    elif unknown:
        kept: list[Incident] = []
        for inc in incidents:
            if inc.machine_id in unknown:
                fr.rejected.append(Rejection(
                    f"{path}, {inc.source}", f"unknown machine {inc.machine_id!r} (the mapping "
                    f"sets create_machines: false)"))
                run.emit(1)
            else:
                kept.append(inc)
        incidents = kept
    # The node's one write path (no per-incident push: the job announces each machine's
    # newest once done). Every parsed incident is indexed, not only the new ones: one
    # stored by an earlier run that stopped before indexing is indexed now.
    new = node.writer.write(IncidentFacts(refresh=False, progress=run.emit,
                                          to_outbox=run.outbox), incidents, "ingest")
    fr.added = len(new)
    fr.duplicates = len(incidents) - len(new)
    return len(incidents)


def _chunk(run: _Run, *, kind: MemoryKind, doc_id: str, title: str, text: str,
           page: int | None = None, section: str = "", machine_ids: tuple[str, ...] = (),
           occurred: datetime | None = None) -> DocumentChunk:
    tenant = run.node.tenant_id
    h = content_hash(tenant, kind.value, page, section, text, ",".join(machine_ids),
                     occurred.isoformat() if occurred else None)
    return DocumentChunk(
        tenant_id=tenant, id=f"{kind.value[:3]}_{h[:24]}", document_id=doc_id,
        document_title=title, kind=kind, page=page, section=section, text=text,
        error_codes=find_codes(f"{section}\n{text}"), machine_ids=machine_ids,
        occurred_at=occurred, content_hash=h)


def _store_chunks(run: _Run, chunks: list[DocumentChunk], fr: FileResult) -> None:
    indexer = run.node.indexer
    run.emit(0, len(chunks))
    for start in range(0, len(chunks), _CHUNK_BATCH):
        batch = chunks[start : start + _CHUNK_BATCH]
        rows = [r for c in batch for r in indexer.chunk_rows(c)]
        new_rows = indexer.new_rows(rows)
        new_chunks = {str(r["id"]).split("~")[0] for r in new_rows}
        indexer.index_rows(new_rows, refresh=False)
        fr.added += len(new_chunks)
        fr.duplicates += len(batch) - len(new_chunks)
        run.emit(len(batch))


def _ingest_manual(run: _Run, path: Path, doc_id: str, title: str, fr: FileResult) -> int:
    parsed = parse_pdf(path)
    fr.rejected.extend(parsed.rejected)
    title = parsed.title if title == path.name else title
    machines = (run.machine_id,) if run.machine_id else ()
    chunks = [_chunk(run, kind=MemoryKind.MANUAL, doc_id=doc_id, title=title, text=c.text,
                     page=c.page, section=c.section, machine_ids=machines)
              for c in parsed.chunks]
    _store_chunks(run, chunks, fr)
    return len(chunks)


def _ingest_shift(run: _Run, path: Path, doc_id: str, title: str, fr: FileResult) -> int:
    node = run.node
    parsed = parse_shift(path, node.duck.list_machines(node.tenant_id), zone=run.zone,
                         machine_id=run.machine_id)
    fr.rejected.extend(parsed.rejected)
    chunks = [_chunk(run, kind=MemoryKind.SHIFT, doc_id=doc_id, title=title, text=e.text,
                     machine_ids=e.machine_ids, occurred=e.occurred_at)
              for e in parsed.entries]
    _store_chunks(run, chunks, fr)
    return len(chunks)
