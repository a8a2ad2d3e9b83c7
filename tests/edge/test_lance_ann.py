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


def test_ann_index_is_built_in_the_background_once_and_never_rebuilt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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

    # A reopened store sees the index and does not build another; it loads the indexes
    # into its caches in the background, before any search asks (the upkeep slot).
    warmed: list[int] = []
    real_warm = lance_mod._warm

    def warm(table: Any) -> None:
        real_warm(table)
        warmed.append(1)

    monkeypatch.setattr(lance_mod, "_warm", warm)
    again = LanceStore(tmp_path / "lance", ann_min_rows=ROWS)
    assert again._upkeep is not None and again._upkeep.name == "lance-warm"
    assert again.wait_for_upkeep(timeout=60)
    assert warmed == [1] and again.cache_bytes() > 0
    again.refresh_indexes(force=True)
    assert again.ann_builds == 0 and again._has_vector_index()
    # A store without an ANN index has nothing worth loading ahead.
    small = LanceStore(tmp_path / "small")
    small.add(_rows(rng, 0, 10))
    assert LanceStore(tmp_path / "small")._upkeep is None and warmed == [1]


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
    """The same stream of writes on a store estimated to need more than its caches may
    grow to (here: the floor): its full caches evict by themselves, and are never dropped."""
    monkeypatch.setattr(lance_mod, "CACHE_RENEW_MIN_BYTES", 2**20)
    monkeypatch.setattr(lance_mod, "INDEX_BYTES_PER_ROW", 2**20)  # 500 rows: "500 MiB"
    rng = np.random.default_rng(5)
    store = LanceStore(tmp_path / "lance", cache_ceiling=lance_mod.INDEX_CACHE_BYTES)
    _stream_of_writes(store, rng, 8)
    assert store.cache_bytes() > 2**20 and store.cache_renewals == 0
    assert store.cache_capacity == lance_mod.INDEX_CACHE_BYTES


def test_the_index_cache_grows_with_the_table_up_to_its_ceiling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache smaller than the live indexes reloads them from disk on every query (at 1M
    rows: a vector search of 1.1 s instead of 47 ms). Past 3/4 of the cache, the upkeep
    renews it sized for the table (twice the estimate); a reopened store is sized at open;
    never past the ceiling. Every row stays found through each renewal."""
    monkeypatch.setattr(lance_mod, "INDEX_CACHE_BYTES", 2**20)  # the floor: 1 MiB
    monkeypatch.setattr(lance_mod, "INDEX_BYTES_PER_ROW", 4096)  # 500 rows: ~2 MiB
    rng = np.random.default_rng(5)
    store = LanceStore(tmp_path / "lance")
    assert store.cache_capacity == 2**20
    capacities: list[int] = []
    real_renew = store._renew_stale_caches

    def renew() -> None:
        real_renew()
        capacities.append(store.cache_capacity)

    monkeypatch.setattr(store, "_renew_stale_caches", renew)
    n, _seen = _stream_of_writes(store, rng, 5)  # 500 rows, then 320 more
    # Grown at the first optimize (500 rows), then once past 750 (4 x 756 x 4 KiB is
    # more than 3/4 of 2 x 500 x 4 KiB); not again at 820.
    assert sorted(set(capacities)) == [2 * 500 * 4096, 2 * 756 * 4096], capacities
    assert capacities == sorted(capacities) and store.cache_renewals >= 2
    for probe in (0, 499, 700, n - 1):
        hits = store.text_search(f"row {probe}", "kind = 'incident'", 3, ["id"])
        assert f"inc_{probe:06d}" in [h["id"] for h in hits], probe
    again = LanceStore(tmp_path / "lance")
    assert again.cache_capacity == 2 * n * 4096
    capped = LanceStore(tmp_path / "lance", cache_ceiling=3 * 2**20)
    assert capped.cache_capacity == 3 * 2**20


def test_reads_by_id_use_an_index_even_on_a_store_made_without_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    store = LanceStore(tmp_path / "lance")
    assert any(ix.columns == ["id"] for ix in store.table.list_indices())
    store.add(_rows(rng, 0, 300))
    store.refresh_indexes(force=True)
    store.table.drop_index("id_idx")  # as a store written before the index existed
    again = LanceStore(tmp_path / "lance")
    assert [ix.index_type for ix in again.table.list_indices() if ix.columns == ["id"]] \
        == ["BTree"]
    again.add(_rows(rng, 300, 1))  # not yet in the index: still found
    assert again.existing_ids("acme", ["inc_000005", "inc_000300", "inc_999999"]) \
        == {"inc_000005", "inc_000300"}
