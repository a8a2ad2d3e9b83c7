"""The LanceDB store's index upkeep: off the write path, the ANN index built once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rae_edge.store.lance as lance_mod
from rae_edge.store.lance import OPTIMIZE_EVERY, LanceStore

ROWS = 1200


def _rows(rng: np.random.Generator, start: int, n: int) -> list[dict[str, Any]]:
    vecs = rng.normal(size=(n, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [{"id": f"inc_{start + i:06d}", "tenant_id": "acme", "kind": "incident",
             "machine_id": f"M{(start + i) % 7}", "text": f"row {start + i}",
             "search_text": f"row {start + i}", "vector": v.tolist()}
            for i, v in enumerate(vecs)]


def test_ann_index_is_built_in_the_background_once_and_never_rebuilt(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    store = LanceStore(tmp_path / "lance", ann_min_rows=ROWS)
    store.add(_rows(rng, 0, ROWS))
    store.refresh_indexes()  # FTS only: fewer than OPTIMIZE_EVERY adds so far
    assert store.ann_builds == 0 and not store._has_vector_index()

    # The adds that reach OPTIMIZE_EVERY: the write that triggers the build returns before
    # the build ends (it runs in a thread), and later writes go on while it trains.
    for i in range(OPTIMIZE_EVERY):
        store.add(_rows(rng, ROWS + i, 1))
    store.refresh_indexes()
    assert store._upkeep is not None
    store.add(_rows(rng, ROWS + OPTIMIZE_EVERY, 1))  # not blocked by the build
    assert store.wait_for_upkeep(timeout=120)
    assert store.ann_builds == 1 and store._has_vector_index()

    # Later optimizes fold rows into the existing index instead of building a new one
    # (Lance reports the kind as "IvfHnswSq": a case-sensitive "IVF" test never matched).
    for round_ in range(2):
        for i in range(OPTIMIZE_EVERY):
            store.add(_rows(rng, 10_000 + 100 * round_ + i, 1))
        store.refresh_indexes()
        assert store.wait_for_upkeep(timeout=120)
    store.refresh_indexes(force=True)
    assert store.ann_builds == 1

    # Searches find rows added after the build (scanned flat until folded in).
    late = _rows(np.random.default_rng(99), 50_000, 1)[0]
    store.add([late])
    hit = store.vector_search(late["vector"], "tenant_id = 'acme'", 1, ["id"])
    assert [h["id"] for h in hit] == [late["id"]]

    # A reopened store sees the index and does not build another.
    again = LanceStore(tmp_path / "lance", ann_min_rows=ROWS)
    again.refresh_indexes(force=True)
    assert again.ann_builds == 0 and again._has_vector_index()


def test_forced_refresh_builds_the_ann_index_before_returning(tmp_path: Path) -> None:
    store = LanceStore(tmp_path / "lance", ann_min_rows=ROWS)
    store.add(_rows(np.random.default_rng(3), 0, ROWS))
    t0 = time.perf_counter()
    store.refresh_indexes(force=True)  # a bulk load: searched with the index right after
    assert store._upkeep is None and store.ann_builds == 1
    assert store._has_vector_index(), f"no ANN index after {time.perf_counter() - t0:.1f} s"


def _stream_of_writes(store: LanceStore, rng: np.random.Generator, rounds: int,
                      ) -> tuple[int, list[int]]:
    """500 rows, then ``rounds`` optimizes' worth of one-row writes, each round searched
    (which loads the new indexes); returns the rows written and the cache size per round."""
    store.add(_rows(rng, 0, 500))
    store.refresh_indexes(force=True)
    seen: list[int] = []
    n = 500
    for _ in range(rounds):
        for _ in range(OPTIMIZE_EVERY):
            store.add(_rows(rng, n, 1))
            n += 1
        store.refresh_indexes()
        assert store.wait_for_upkeep(timeout=120)
        store.text_search("row", "kind = 'incident'", 5, ["id"])
        seen.append(store.cache_bytes())
    return n, seen


def test_stale_index_caches_are_renewed_and_nothing_is_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every optimize leaves the index files it replaced in the caches; once they hold
    more than the bound (here 1 MiB) and twice the fresh size, the store reopens the table
    on fresh caches, and every row written before and after is still found."""
    monkeypatch.setattr(lance_mod, "CACHE_RENEW_MIN_BYTES", 2**20)
    rng = np.random.default_rng(5)
    store = LanceStore(tmp_path / "lance")
    n, seen = _stream_of_writes(store, rng, 12)
    assert store.cache_renewals >= 1, seen
    assert min(seen) < max(seen)
    store.add(_rows(rng, n, 1))  # through the renewed handle
    assert store.count() == n + 1
    for probe in (0, 600, n - 1, n):
        hits = store.text_search(f"row {probe}", "kind = 'incident'", 3, ["id"])
        assert f"inc_{probe:06d}" in [h["id"] for h in hits], probe


def test_caches_of_a_store_whose_indexes_outgrow_them_are_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same stream of writes on a store estimated to need more than the caches hold
    (as ~1M rows would): its full caches evict by themselves, and are never dropped."""
    monkeypatch.setattr(lance_mod, "CACHE_RENEW_MIN_BYTES", 2**20)
    monkeypatch.setattr(lance_mod, "INDEX_BYTES_PER_ROW", 2**20)  # 500 rows: "500 MiB"
    rng = np.random.default_rng(5)
    store = LanceStore(tmp_path / "lance")
    _stream_of_writes(store, rng, 8)
    assert store.cache_bytes() > 2**20 and store.cache_renewals == 0
