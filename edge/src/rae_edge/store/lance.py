"""LanceDB store: every searchable memory (incidents, manual sections, shift entries, work
orders, corrections) as text + vector in one table, ``memories``.

Indexes: BITMAP on ``machine_id``, ``kind`` and ``tenant_id`` (prefilters), BTREE on ``id``
(reads by id), the native full-text index on ``search_text`` (the abbreviation-expanded
text; ``text`` keeps the original), and an ANN index once the table is large enough for it
to pay.
LanceDB has no bound parameters, so every value in a ``where`` goes through
:func:`sql_literal`, which quotes it; ids are also checked against a strict pattern.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
from lancedb.query import LanceVectorQueryBuilder

from rae_edge.errors import InvalidInputError

log = logging.getLogger(__name__)

TABLE = "memories"
DIM = 384
ANN_MIN_ROWS = 50_000  # below this, exact (flat) search with prefilters is fast enough
# add() batches between two optimize() calls. Each optimize takes ~0.2 s of both cores at
# 100k rows, and the writes it overlaps wait: at 16, `POST /corrections` p95 at 100k was
# 47-54 ms (p50 31), at 64 35 ms (p50 27). Far fewer (at most one per 30 s under the load
# test: ~300 one-row fragments) made every query slow enough for the load test to collapse.
OPTIMIZE_EVERY = 64
# LanceDB's caches are unbounded by default, and every add() leaves metadata of a version
# that is never read again: ~55 MiB per 1,000 single-incident writes, so a node's memory
# grew for as long as it ran. The indexes of 100k memories (ANN, full text, bitmaps) take
# ~70 MiB in all, so they stay cached; past ~170k rows the index cache grows with the
# table (:func:`index_cache_bytes`): at 1M rows (~660 MiB of indexes) a cache of 256 MiB
# reloaded the ANN partitions from disk on every query, and a vector search took 1.1 s
# instead of 47 ms.
INDEX_CACHE_BYTES = 256 * 2**20  # the least the index cache holds
INDEX_CACHE_SHARE = 0.25  # of the machine's memory: the most it may grow to
METADATA_CACHE_BYTES = 32 * 2**20
# Each optimize writes fresh index files, and the caches keep the ones they replaced until
# evicted by size: at 10 single-incident writes/s (an optimize every ~1.6 s) the caches
# grew by 126 MiB in 4 minutes of the load test, on a store whose indexes take ~30 MiB.
# Once they hold more than this and twice what the live indexes take (as measured after
# the last renewal, or estimated from the row count: ~70 MiB at 100k rows), the upkeep
# thread opens the table anew on fresh caches (warmed before they serve), and the old ones
# go with the last query still using them. The estimate keeps a store whose indexes
# outgrow the most the caches may take (past ``cache_ceiling``) from renewing them at all:
# full, they evict by themselves.
CACHE_RENEW_MIN_BYTES = 32 * 2**20
INDEX_BYTES_PER_ROW = 768  # measured: 660 MiB of warm caches at 1.01M rows, 70 at 100k

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("tenant_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("machine_id", pa.string()),
        pa.field("text", pa.string(), nullable=False),
        pa.field("search_text", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32(), DIM)),
        pa.field("occurred_at", pa.timestamp("us", tz="UTC")),
        pa.field("error_codes", pa.list_(pa.string())),
        pa.field("target_id", pa.string()),
        pa.field("document_id", pa.string()),
        pa.field("page", pa.int32()),
        pa.field("section", pa.string()),
        pa.field("source", pa.string()),
        pa.field("model_id", pa.string()),
    ]
)


def sql_literal(value: str | int | float | datetime) -> str:
    """A value quoted for a LanceDB (DataFusion) filter; strings have quotes doubled."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.isoformat()}'"
    if "\x00" in value:
        raise InvalidInputError("NUL byte in a filter value")
    return "'" + value.replace("'", "''") + "'"


def _session(index_bytes: int) -> lancedb.Session:
    return lancedb.Session(index_cache_size_bytes=index_bytes,
                           metadata_cache_size_bytes=METADATA_CACHE_BYTES)


def index_cache_bytes(rows: int, ceiling: int) -> int:
    """The index cache for a table of ``rows`` rows: room for its live indexes twice over
    (each optimize writes new index files; the ones it replaced wait in the cache until
    evicted or renewed), at least :data:`INDEX_CACHE_BYTES`, at most ``ceiling``."""
    return max(INDEX_CACHE_BYTES, min(ceiling, 2 * rows * INDEX_BYTES_PER_ROW))


def memory_share(share: float = INDEX_CACHE_SHARE) -> int:
    """``share`` of this machine's physical memory, in bytes (8 GiB assumed where the
    system does not tell)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return int(total * share)


def _warm(table: Any) -> None:
    """One full-text and one vector query with a prefilter: what loads the indexes a
    search and a briefing use into the caches of ``table``'s session."""
    where = "kind = 'incident'"
    if any(ix.index_type == "FTS" for ix in table.list_indices()):
        table.search("warm", query_type="fts", fts_columns="search_text").where(
            where, prefilter=True).select(["id", "_score"]).limit(1).to_list()
    table.search([1.0] + [0.0] * (DIM - 1), vector_column_name="vector", query_type="vector").where(
        where, prefilter=True).select(["id", "_distance"]).limit(1).to_list()


def in_list(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(sql_literal(v) for v in values)})"


class LanceStore:
    """The node's vector + full-text store (folder ``lance/``)."""

    def __init__(self, path: Path, ann_min_rows: int = ANN_MIN_ROWS,
                 cache_ceiling: int | None = None) -> None:
        """``cache_ceiling``: the most the index cache may grow to (a quarter of the
        machine's memory unless given)."""
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.ann_min_rows = ann_min_rows
        self.cache_ceiling = memory_share() if cache_ceiling is None else cache_ceiling
        self.ann_builds = 0  # ANN indexes this store built (a rebuild would count again)
        self._upkeep: threading.Thread | None = None  # background optimize / ANN build
        self.cache_capacity = INDEX_CACHE_BYTES
        self._session = _session(self.cache_capacity)
        self._db = lancedb.connect(str(path), session=self._session)
        self._warm_bytes = 0  # what the caches held right after the last renewal
        self.cache_renewals = 0
        self._lock = threading.RLock()
        self._pending_adds = 0  # Lance versions written since the last optimize
        # Writes that added or rewrote manual sections: what briefings read of this table
        # (its version moves with every incident too, so cached briefings key on this).
        self.manual_writes = 0
        self._fts_built = False
        if TABLE in self._db.list_tables().tables:
            self.table = self._db.open_table(TABLE)
            want = index_cache_bytes(self.count(), self.cache_ceiling)
            if want > self.cache_capacity:  # a large store: sized before anything is cached
                self.cache_capacity = want
                self._session = _session(want)
                self._db = lancedb.connect(str(path), session=self._session)
                self.table = self._db.open_table(TABLE)
            if not any(ix.columns == ["id"] for ix in self.table.list_indices()):
                self._create_id_index()  # a store made before the index was
            if self._has_vector_index():
                # The first search after a restart loads the ANN index (1.7-2.1 s at 1M
                # rows): loaded here, in the upkeep slot, before a technician waits on it.
                self._upkeep = threading.Thread(target=self._warm_caches, name="lance-warm",
                                                daemon=True)
                self._upkeep.start()
        else:
            self.table = self._db.create_table(TABLE, schema=SCHEMA)
            self._create_scalar_indexes()

    def _create_scalar_indexes(self) -> None:
        # The sync table's create_index(config=Bitmap()) mis-routes the column name in
        # lancedb 0.40; create_scalar_index is deprecated but correct.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for col in ("tenant_id", "machine_id", "kind"):
                self.table.create_scalar_index(col, index_type="BITMAP", replace=True)
        self._create_id_index()

    def _create_id_index(self) -> None:
        # Reads by id (a correction of a found memory, an exact code's memory, existing
        # ids) scanned the table without it: 24-70 ms at 1M rows, 3-4 ms with it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.table.create_scalar_index("id", index_type="BTREE", replace=True)

    def cache_bytes(self) -> int:
        """Bytes held in this store's index and metadata caches."""
        return int(self._session.size_bytes)

    def count(self, where: str | None = None) -> int:
        return int(self.table.count_rows(where))

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        """Appends rows (one Lance version per call: batch them) and keeps indexes fresh."""
        if not rows:
            return
        with self._lock:
            self.table.add(pa.Table.from_pylist(list(rows), schema=SCHEMA))
            self._pending_adds += 1
            if any(r.get("kind") == "manual" for r in rows):
                self.manual_writes += 1

    def rewrite(self, rows: pa.Table) -> None:
        """Replaces the stored rows with these (same ids), e.g. re-embedded ones."""
        with self._lock:
            self.table.merge_insert("id").when_matched_update_all().execute(rows)
            self._pending_adds += 1
            self.manual_writes += 1

    def refresh_indexes(self, force: bool = False) -> None:
        """After a batch of writes. Rows not yet in an index are still found (Lance scans
        them flat, full-text included), so a write never waits for index upkeep: the
        full-text index is built once; every ``OPTIMIZE_EVERY`` batches a background
        thread runs ``optimize`` (which folds new rows into every index and compacts the
        versions each ``add`` makes: ~0.2 s at 100k rows on two cores) and, once the table
        reaches ``ann_min_rows``, builds the ANN index (~25 s at 100k). With ``force`` (a
        bulk load, searched right after) both run now, in the caller."""
        with self._lock:
            if not self._has_fts():
                self.table.create_fts_index("search_text", replace=True, with_position=False)
            if not force:
                if self._pending_adds >= OPTIMIZE_EVERY and not self._upkeep_running():
                    self._pending_adds = 0
                    self._upkeep = threading.Thread(target=self._run_upkeep,
                                                    name="lance-upkeep", daemon=True)
                    self._upkeep.start()
                return
        self.wait_for_upkeep()
        with self._lock:
            self._pending_adds = 0
            self._optimize_and_build()

    def _upkeep_running(self) -> bool:
        return self._upkeep is not None and self._upkeep.is_alive()

    def _run_upkeep(self) -> None:
        # Outside the lock: rows keep being added meanwhile (appends commute with a
        # compaction and an index build; they stay unindexed and are scanned flat).
        try:
            self._optimize_and_build()
        except Exception:  # a later refresh tries again; searches stay exact meanwhile
            log.exception("LanceDB index upkeep failed")

    def _optimize_and_build(self) -> None:
        self.table.optimize()
        if not self._has_vector_index() and self.count() >= self.ann_min_rows:
            self.table.create_index(metric="cosine", vector_column_name="vector",
                                    index_type="IVF_HNSW_SQ", replace=False)
            self.ann_builds += 1
        self._renew_stale_caches()

    def _renew_stale_caches(self) -> None:
        """New caches when the old ones hold mostly replaced index files, or when the live
        indexes would take more than 3/4 of the index cache (then one sized for the
        table: the next growth comes after half as many rows again)."""
        rows = self.count()
        live = max(self._warm_bytes, rows * INDEX_BYTES_PER_ROW)
        want = index_cache_bytes(rows, self.cache_ceiling)
        grow = (want > self.cache_capacity
                and 4 * rows * INDEX_BYTES_PER_ROW > 3 * self.cache_capacity)
        if not grow and self.cache_bytes() <= max(CACHE_RENEW_MIN_BYTES, 2 * live):
            return
        capacity = want if grow else self.cache_capacity
        session = _session(capacity)
        db = lancedb.connect(str(self.path), session=session)
        table = db.open_table(TABLE)
        _warm(table)  # loads the current indexes, off the request path
        with self._lock:  # no add() in between: the new handle sees every row written
            table.checkout_latest()  # type: ignore[no-untyped-call]
            self._session, self._db, self.table = session, db, table
            self.cache_capacity = capacity
        self._warm_bytes = int(session.size_bytes)
        self.cache_renewals += 1

    def _warm_caches(self) -> None:
        try:
            _warm(self.table)
        except Exception:  # a search loads what it needs anyway
            log.exception("warming LanceDB's caches failed")

    def wait_for_upkeep(self, timeout: float | None = None) -> bool:
        """Waits for background index upkeep, if it runs; True when none is running."""
        thread = self._upkeep
        if thread is not None:
            thread.join(timeout)
        return not self._upkeep_running()

    def _has_vector_index(self) -> bool:
        # Lance names the kinds "IvfHnswSq", "IvfPq", ...: compared case-blind (an exact
        # "IVF" prefix never matched, so every optimize rebuilt the index from scratch).
        return any("vector" in ix.columns and ix.index_type.upper().startswith("IVF")
                   for ix in self.table.list_indices())

    def _has_fts(self) -> bool:
        if not self._fts_built:
            self._fts_built = any(ix.index_type == "FTS" for ix in self.table.list_indices())
        return self._fts_built

    def existing_ids(self, tenant_id: str, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        where = f"tenant_id = {sql_literal(tenant_id)} AND {in_list('id', ids)}"
        got = self.table.search().where(where).select(["id"]).limit(len(ids)).to_list()
        return {str(r["id"]) for r in got}

    def vector_search(
        self, vector: Sequence[float], where: str, k: int, columns: Sequence[str]
    ) -> list[dict[str, Any]]:
        base = self.table.search(list(vector), vector_column_name="vector", query_type="vector")
        assert isinstance(base, LanceVectorQueryBuilder)
        q = (
            base.distance_type("cosine")
            .where(where, prefilter=True)
            .select([*columns, "_distance"])
            .limit(k)
        )
        return list(q.to_list())

    def text_search(
        self, query: str, where: str, k: int, columns: Sequence[str]
    ) -> list[dict[str, Any]]:
        if not self._has_fts():
            self.refresh_indexes()
        q = (
            self.table.search(query, query_type="fts", fts_columns="search_text")
            .where(where, prefilter=True)
            .select([*columns, "_score"])
            .limit(k)
        )
        return list(q.to_list())

    def arrow_rows(self, where: str, columns: Sequence[str], limit: int) -> pa.Table:
        """:meth:`rows` as an Arrow table (vectors stay arrays, not Python floats)."""
        return self.table.search().where(where).select(list(columns)).limit(limit).to_arrow()

    def rows(self, where: str, columns: Sequence[str], limit: int) -> list[dict[str, Any]]:
        return list(self.table.search().where(where).select(list(columns)).limit(limit).to_list())
