"""Central's Qdrant repository (local folder mode) and the background indexer with the
real packaged ONNX embedder."""

from __future__ import annotations

from pathlib import Path

import pytest

from rae_central.config import CentralSettings
from rae_central.db import migrate
from rae_central.db.engine import make_engine
from rae_central.store import CentralStore
from rae_central.vectors import (
    EmbedderMismatchError,
    VectorIndexer,
    VectorPoint,
    VectorStore,
    default_embedder,
)
from tests.central.test_store import OTHER, A, B, _cor


def test_collection_records_its_model_and_refuses_another(tmp_path: Path) -> None:
    where = str(tmp_path / "qdrant")
    vs = VectorStore(where, embedder_tag="model-a@1", dim=4)
    vs.upsert([VectorPoint("acme", "correction", "c1", [1, 0, 0, 0], {"machine_id": "m"}),
               VectorPoint("globex", "correction", "c2", [1, 0, 0, 0], {"machine_id": "m"})])
    vs.upsert([VectorPoint("acme", "correction", "c1", [1, 0, 0, 0], {"machine_id": "m"})])
    assert vs.count("acme") == 1  # same memory twice is one point
    hits = vs.query("acme", [1, 0, 0, 0], k=5)
    assert [h.memory_id for h in hits] == ["c1"]  # the other tenant's point never shows
    vs.close()
    with pytest.raises(EmbedderMismatchError, match="model-a@1"):
        VectorStore(where, embedder_tag="model-b@1", dim=4)
    with pytest.raises(EmbedderMismatchError, match="dim 4"):
        VectorStore(where, embedder_tag="model-a@1", dim=8)
    again = VectorStore(where, embedder_tag="model-a@1", dim=4)
    assert again.count("acme") == 1  # persisted in the folder
    again.close()


def test_indexer_embeds_each_row_once(pg_url: str, tmp_path: Path) -> None:
    migrate.upgrade(pg_url)
    engine = make_engine(pg_url)
    store = CentralStore(engine)
    for n in (A, B, OTHER):
        store.enroll(n, "k")
    store.ingest([_cor(A, i) for i in range(1, 6)] + [_cor(OTHER, 1)])
    emb = default_embedder()
    vs = VectorStore(str(tmp_path / "q"), embedder_tag=emb.tag, dim=emb.dim)
    # as serve runs it: on the application's role, tenant by tenant
    app_engine = make_engine(CentralSettings(database_url=pg_url).app_url())
    idx = VectorIndexer(app_engine, vs, emb, batch_size=4)
    assert idx.drain() == 6
    assert idx.drain() == 0  # nothing left: rows are marked embedded
    assert sorted(vs.memory_ids("acme", "correction")) == sorted(
        f"cor-node-a-{i}" for i in range(1, 6))
    assert vs.memory_ids("globex", "correction") == ["cor-node-x-1"]
    assert all(c["embedded"] for c in store.recent_corrections())
    q = emb.embed(["sensor 3 was loose"])[0]
    assert vs.query("acme", q.tolist(), k=1)[0].memory_id == "cor-node-a-3"
    vs.close()
    engine.dispose()
    app_engine.dispose()
