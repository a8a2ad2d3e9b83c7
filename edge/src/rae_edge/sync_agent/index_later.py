"""``IndexLater``: makes corrections from other plants searchable off the apply path.

Embedding is what a catch-up spends its time on (the packaged model embeds a few hundred
short texts a second on two cores): the :class:`~rae_edge.sync_agent.down_apply.DownApplier`
stores, pushes and acks a batch without waiting for it, as central does with its vector
indexer, and hands the stored corrections here. One thread indexes what has gathered, up
to ``batch`` at a time (one embedding call, one LanceDB append). Until then a correction is
in every briefing (DuckDB) and in the pushes; search finds it seconds later. While the
applier is busy (a catch-up), the thread waits (at most ``max_wait_s``): embedding would
take the cores the catch-up needs, and the corrections reach the briefings and tablets
first. Batches are small so that one under way when a catch-up starts ends soon.

Nothing is left unindexed by a crash: on start, the thread first indexes every correction
created since the previous start's sweep (the indexer skips rows already present), and
only then records the time that sweep began (``sync_state.index_swept_at``), less a
margin for a write whose transaction was still open.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from rae_edge.store.duck import DuckStore
from rae_edge.sync_agent.batches import BatchThread
from rae_edge.write.writer import IndexPort
from rae_sync.domain import Correction, CorrectionMethod

log = logging.getLogger("rae_edge.sync")

SWEPT_KEY = "index_swept_at"
MARGIN = timedelta(minutes=10)  # a write's transaction open across the sweep's start
_COLS = ("tenant_id, id, machine_id, text, author, target_id, method, valid_from, valid_to, "
         "origin_node, audio_sha256, hlc")


class IndexLater(BatchThread[Correction]):
    """Indexes corrections in the background (see the module docstring); :meth:`stop`
    leaves the rest to the next start's sweep."""

    def __init__(self, duck: DuckStore, indexer: IndexPort, *, batch: int = 128,
                 busy: Callable[[], bool] = lambda: False, busy_wait_s: float = 0.2,
                 max_wait_s: float = 60.0) -> None:
        super().__init__("rae-sync-index", batch)
        self.duck = duck
        self.indexer = indexer
        self.busy = busy  # True while the applier has work: indexing waits
        self.busy_wait_s = busy_wait_s
        self.max_wait_s = max_wait_s  # a busy applier holds indexing back this long at most
        self._pending = 0  # handed over, not yet indexed (or given up on)
        self._cv = threading.Condition()

    def put(self, corrections: Sequence[Correction]) -> None:
        with self._cv:
            self._pending += len(corrections)
        for c in corrections:
            self._queue.put(c)

    def wait_idle(self, timeout: float) -> bool:
        """True once everything handed over so far is indexed (tests)."""
        with self._cv:
            return self._cv.wait_for(lambda: self._pending == 0, timeout)

    def before_first(self) -> None:
        try:
            self.sweep()
        except Exception:  # the next start sweeps again from the same point
            log.exception("sync: indexing corrections stored before this start failed")

    def hold(self) -> None:
        held = time.monotonic()
        while (self.busy() and not self.stopping
               and time.monotonic() - held < self.max_wait_s):
            time.sleep(self.busy_wait_s)

    def handle(self, items: list[Correction]) -> None:
        try:
            self.indexer.index_corrections(items)
        except Exception:  # stored and acked: the next start's sweep indexes them
            log.exception("sync: indexing %d corrections failed; the next start "
                          "indexes them", len(items))
        with self._cv:
            self._pending -= len(items)
            self._cv.notify_all()

    def sweep(self) -> int:
        """Indexes the corrections created since the last sweep; returns how many it
        added."""
        began = datetime.now(UTC)
        rows = self.duck.query("SELECT value FROM sync_state WHERE key = ?", [SWEPT_KEY])
        since = (datetime.fromisoformat(str(rows[0][0])) - MARGIN if rows
                 else datetime(1970, 1, 1, tzinfo=UTC))
        added = 0
        offset = 0
        while not self.stopping:
            got = self.duck.query_dicts(
                f"SELECT {_COLS} FROM corrections WHERE created_at >= ? ORDER BY created_at, "
                "tenant_id, id LIMIT ? OFFSET ?", [since, self.batch, offset])
            if not got:
                break
            offset += len(got)
            added += self.indexer.index_corrections([_correction(r) for r in got])
        if self.stopping:
            return added
        with self.duck.transaction() as cur:
            cur.execute("INSERT INTO sync_state VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                        "SET value = excluded.value", [SWEPT_KEY, began.isoformat()])
        if added:
            log.info("sync: indexed %d corrections stored before this start", added)
        return added


def _correction(r: dict[str, Any]) -> Correction:
    return Correction(**{**r, "method": CorrectionMethod(r["method"])})
