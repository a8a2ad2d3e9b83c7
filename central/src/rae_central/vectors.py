"""Central's vectors in Qdrant: one repository over qdrant-client, and the background
indexer that fills it from Postgres.

:class:`VectorStore` takes a Qdrant URL (a real cluster) or a local path (the embedded
default; ``":memory:"`` too). Its collection records the embedding model in the
collection's metadata (``embedder`` tag and ``dim``); opening it with another model is a
:class:`EmbedderMismatchError`, since vectors of two models are not comparable.

Point ids derive from ``(tenant, kind, memory id)`` (uuid5), so writing the same memory
twice is one point: replays and re-indexing never duplicate. Every query filters on
``tenant_id``.

:class:`VectorIndexer` keeps the vectors off the ingest ack path: the ingest workers only
commit rows to Postgres (``embedded_at IS NULL``); the indexer, in the serving process
(a local Qdrant folder admits one process), picks those rows in batches, embeds them,
upserts the points and only then marks the rows embedded. A crash in between re-embeds
the batch, which the deterministic ids make harmless.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from qdrant_client import QdrantClient, models
from sqlalchemy import Engine, text

from rae_central.rls import set_tenant

log = logging.getLogger(__name__)

_NS = uuid.UUID("6f1c1d9e-2b8a-4e47-9a55-3f0d8f3a7c21")


class Embedder(Protocol):
    """What the indexer needs of an embedder (``rae_models.OnnxEmbedder`` fits)."""

    @property
    def tag(self) -> str: ...

    dim: int

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray: ...


class EmbedderMismatchError(RuntimeError):
    """The collection holds vectors of another embedding model (or dimension)."""


@dataclass(frozen=True)
class VectorPoint:
    tenant_id: str
    kind: str  # "correction" | "incident"
    memory_id: str
    vector: Sequence[float]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VectorHit:
    memory_id: str
    kind: str
    score: float
    payload: dict[str, Any]


def point_id(tenant_id: str, kind: str, memory_id: str) -> str:
    return str(uuid.uuid5(_NS, f"{tenant_id}\x1f{kind}\x1f{memory_id}"))


def open_client(location: str) -> QdrantClient:
    """``http(s)://...`` → a cluster; ``":memory:"`` → in process; else a local folder."""
    if location.startswith(("http://", "https://")):
        return QdrantClient(url=location, timeout=60)
    if location == ":memory:":
        return QdrantClient(location=":memory:")
    return QdrantClient(path=location)


class VectorStore:
    """One Qdrant collection of correction and incident vectors of one embedding model."""

    def __init__(self, location: str, *, embedder_tag: str, dim: int,
                 collection: str = "rae_memory") -> None:
        self.location = location
        self.collection = collection
        self.embedder_tag = embedder_tag
        self.dim = dim
        self.client = open_client(location)
        self._remote = location.startswith(("http://", "https://"))
        self._ensure_collection()

    def _ensure_collection(self) -> None:
        if not self.client.collection_exists(self.collection):
            self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(size=self.dim,
                                                   distance=models.Distance.COSINE),
                metadata={"embedder": self.embedder_tag, "dim": self.dim},
            )
            # Local mode has no payload indexes (it warns); a cluster needs them for filters.
            for key in ("tenant_id", "kind", "machine_id") if self._remote else ():
                self.client.create_payload_index(self.collection, key,
                                                 models.PayloadSchemaType.KEYWORD)
            return
        info = self.client.get_collection(self.collection)
        meta = dict(info.config.metadata or {})
        params = info.config.params.vectors
        size = params.size if isinstance(params, models.VectorParams) else None
        if meta.get("embedder") != self.embedder_tag or size != self.dim:
            raise EmbedderMismatchError(
                f"Qdrant collection {self.collection!r} at {self.location} holds vectors of "
                f"embedder {meta.get('embedder')!r} (dim {size}); this central embeds with "
                f"{self.embedder_tag!r} (dim {self.dim}). Use another collection or re-index."
            )

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        if not points:
            return
        self.client.upsert(
            self.collection,
            points=[
                models.PointStruct(
                    id=point_id(p.tenant_id, p.kind, p.memory_id),
                    vector=[float(x) for x in p.vector],
                    payload={**p.payload, "tenant_id": p.tenant_id, "kind": p.kind,
                             "memory_id": p.memory_id},
                )
                for p in points
            ],
            wait=True,
        )

    def _tenant_filter(self, tenant_id: str, kind: str | None = None,
                       machine_id: str | None = None) -> models.Filter:
        must: list[models.Condition] = [
            models.FieldCondition(key="tenant_id", match=models.MatchValue(value=tenant_id))]
        if kind:
            must.append(models.FieldCondition(key="kind", match=models.MatchValue(value=kind)))
        if machine_id:
            must.append(models.FieldCondition(key="machine_id",
                                              match=models.MatchValue(value=machine_id)))
        return models.Filter(must=must)

    def query(self, tenant_id: str, vector: Sequence[float], k: int = 10, *,
              kind: str | None = None, machine_id: str | None = None) -> list[VectorHit]:
        res = self.client.query_points(
            self.collection, query=[float(x) for x in vector], limit=k,
            query_filter=self._tenant_filter(tenant_id, kind, machine_id), with_payload=True,
        )
        return [VectorHit(str((p.payload or {}).get("memory_id")),
                          str((p.payload or {}).get("kind")), float(p.score), dict(p.payload or {}))
                for p in res.points]

    def count(self, tenant_id: str, kind: str | None = None) -> int:
        return int(self.client.count(self.collection,
                                     count_filter=self._tenant_filter(tenant_id, kind),
                                     exact=True).count)

    def memory_ids(self, tenant_id: str, kind: str) -> list[str]:
        """Every memory id of one tenant and kind (tests and audits; scrolls all points)."""
        out: list[str] = []
        offset: Any = None
        while True:
            points, offset = self.client.scroll(
                self.collection, scroll_filter=self._tenant_filter(tenant_id, kind),
                limit=1000, offset=offset, with_payload=["memory_id"], with_vectors=False)
            out.extend(str((p.payload or {})["memory_id"]) for p in points)
            if offset is None:
                return out

    def close(self) -> None:
        self.client.close()


# Rows waiting for vectors; SKIP LOCKED so two indexers never take the same rows.
_PICK = {
    "correction": text(
        "SELECT tenant_id, id, machine_id, text, hlc, origin_node, target_id FROM corrections "
        "WHERE tenant_id = :t AND embedded_at IS NULL ORDER BY received_at LIMIT :n "
        "FOR UPDATE SKIP LOCKED"),
    "incident": text(
        "SELECT tenant_id, id, machine_id, "
        "coalesce(error_code || ': ', '') || symptom || coalesce(' / ' || action, ''), "
        "occurred_at::text, origin_node, NULL FROM incidents "
        "WHERE tenant_id = :t AND embedded_at IS NULL ORDER BY received_at LIMIT :n "
        "FOR UPDATE SKIP LOCKED"),
}
_DONE = {
    "correction": text("UPDATE corrections SET embedded_at = :at "
                       "WHERE tenant_id = :t AND id = ANY(:ids)"),
    "incident": text("UPDATE incidents SET embedded_at = :at "
                     "WHERE tenant_id = :t AND id = ANY(:ids)"),
}


@dataclass
class IndexerStats:
    points: int = 0
    batches: int = 0
    embed_s: float = 0.0
    upsert_s: float = 0.0
    errors: int = 0
    last_error: str = ""


class VectorIndexer:
    """Embeds rows that have no vector yet and writes them to Qdrant, in batches, in a
    background thread (``start``/``stop``) or on demand (``run_once``)."""

    def __init__(self, engine: Engine, store: VectorStore, embedder: Embedder, *,
                 batch_size: int = 256, idle_s: float = 0.5) -> None:
        self.engine = engine
        self.store = store
        self.embedder = embedder
        self.batch_size = batch_size
        self.idle_s = idle_s
        self.stats = IndexerStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """One batch of each kind for each tenant (every transaction scoped to one tenant
        by row-level security); returns how many points were written."""
        with self.engine.connect() as conn:
            tenants = [str(t) for t in conn.execute(text("SELECT rae_tenants()")).scalars()]
        return sum(self._run_tenant(t) for t in tenants)

    def _run_tenant(self, tenant: str) -> int:
        done = 0
        for kind in ("correction", "incident"):
            with self.engine.begin() as conn:
                set_tenant(conn, tenant)
                rows = conn.execute(_PICK[kind], {"t": tenant, "n": self.batch_size}).all()
                if not rows:
                    continue
                t0 = time.perf_counter()
                vectors = self.embedder.embed([r[3] for r in rows])
                t1 = time.perf_counter()
                self.store.upsert([
                    VectorPoint(r[0], kind, r[1], vectors[i].tolist(),
                                {"machine_id": r[2], "text": r[3], "hlc": r[4],
                                 "origin_node": r[5], "target_id": r[6]})
                    for i, r in enumerate(rows)])
                t2 = time.perf_counter()
                conn.execute(_DONE[kind], {"at": datetime.now(UTC), "t": tenant,
                                           "ids": [r[1] for r in rows]})
            self.stats.embed_s += t1 - t0
            self.stats.upsert_s += t2 - t1
            self.stats.points += len(rows)
            self.stats.batches += 1
            done += len(rows)
        return done

    def drain(self, timeout_s: float = 120.0) -> int:
        """Runs batches until nothing is left (or the timeout); returns points written."""
        total, deadline = 0, time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            n = self.run_once()
            total += n
            if n == 0:
                break
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                n = self.run_once()
            except Exception as exc:  # a database or Qdrant hiccup: retry, never die
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("vector indexer: %s", self.stats.last_error)
                n = 0
                self._stop.wait(2.0)
            if n == 0:
                self._stop.wait(self.idle_s)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="vector-indexer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


def default_embedder() -> Embedder:
    """The packaged ONNX embedder of ``rae_models`` (the same model as the edges use)."""
    from rae_models import OnnxEmbedder

    return OnnxEmbedder()
