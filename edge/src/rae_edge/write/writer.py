"""``Writer``: the one path every fact takes into the node.

:meth:`Writer.write` runs the same steps, in the same order, for every kind of fact and
every origin (API, ingest, typed, voiced, another plant, and later sources):

1. ``store`` + ``outbox``: one DuckDB transaction stores the new facts and, when sync is
   on and the origin is this node, their typed ``rae_sync`` messages (validated there: a
   bad one fails the write, nothing is stored), and marks the ``Idempotency-Key`` of the
   request being served written (``mark``: :func:`rae_edge.store.idempotency.note_written`);
2. ``wake_sync``: the sync agent is woken at once when rows were queued (it would poll);
3. ``push``: one typed push message per new fact (:mod:`rae_edge.push_kinds`), all of one
   write stored in one transaction; step 1 stored them as owed (``Fact.promised``,
   :meth:`rae_edge.push.PushBus.hold`) and these messages pay them, so a crash between
   the two leaves them to be sent when the node starts;
4. ``index``: searchable rows (LanceDB) for the facts (after the push: indexing takes
   longer than everything before it, and the briefing reads DuckDB);
5. ``drift``: the tenant's drift alerts are recomputed when the new facts can change them
   (reads never do it): a correction of something, a document, an incident some
   correction already names.

Every step is reported to the writer's observers (:class:`WriteStep`), so the order can
be watched on the real path. A kind of fact is a small :class:`Fact` (see
:mod:`rae_edge.write.facts`): how to store it, its outbox message, how to index it and its
push; adding one (machine alarms, "this fixed it" feedback) needs no change here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import duckdb

from rae_edge.metrics import WRITE_SECONDS
from rae_edge.push_kinds import PushBody
from rae_edge.store.changes import Touch
from rae_edge.store.duck import DuckStore
from rae_edge.store.idempotency import note_written
from rae_edge.store.outbox import OutboxMessage, enqueue
from rae_sync.domain import Correction, Incident

log = logging.getLogger(__name__)

_marks = threading.local()  # per thread: when the current write's last step ended

#: the steps of every write, in their order
STEPS = ("store", "outbox", "wake_sync", "push", "index", "drift")

T = TypeVar("T")


@dataclass(frozen=True)
class WriteStep:
    """One step of one write, as observers see it: which fact kind, from where, the step
    (one of :data:`STEPS`), the ids it concerned, how many rows/messages it made and how
    long it took."""

    fact: str
    origin: str
    step: str
    ids: tuple[str, ...]
    count: int
    seconds: float = 0.0  # wall time of the step (the store step includes the outbox)


class IndexPort(Protocol):
    """What the writer needs of the indexer."""

    def index_incidents(self, incidents: Sequence[Incident], *, refresh: bool = True,
                        progress: Callable[[int], None] | None = None,
                        vectors: Any = None, fresh: Collection[str] = ()) -> int: ...

    def index_corrections(self, corrections: Sequence[Correction], *,
                          refresh: bool = True,
                          vectors: Mapping[str, Sequence[float]] | None = None) -> int: ...


class PushPort(Protocol):
    """What the writer needs of the push bus."""

    def send(self, tenant_id: str, body: PushBody) -> int: ...

    def send_many(self, items: Sequence[tuple[str, PushBody]],
                  owed: str | None = None) -> list[int]: ...

    def hold(self, cur: duckdb.DuckDBPyConnection,
             items: Sequence[tuple[str, PushBody]]) -> str | None: ...


class DriftPort(Protocol):
    """What the writer needs of the drift monitor."""

    def refresh(self, tenant: str) -> Any: ...


class Fact(Protocol, Generic[T]):
    """One kind of fact: what each step does with it. ``items`` are what the caller
    wrote, ``stored`` the ones that were new (a repeat is stored once)."""

    @property
    def name(self) -> str: ...

    @property
    def to_outbox(self) -> bool:
        """Queued for central when sync is on (False: e.g. a correction from another
        plant)."""
        ...

    def drifts(self, cur: duckdb.DuckDBPyConnection, stored: Sequence[T]) -> bool:
        """Whether these newly stored facts can change drift alerts (asked inside the
        store transaction; False skips the recompute)."""
        ...

    def ids(self, items: Sequence[T]) -> tuple[str, ...]: ...

    def tenants(self, items: Sequence[T]) -> list[str]: ...

    def touches(self, stored: Sequence[T]) -> list[Touch]:
        """Whose briefings the new facts change: (tenant, machine), or (tenant, None)
        for all of a tenant's machines (see :mod:`rae_edge.store.changes`)."""
        ...

    def store(self, cur: duckdb.DuckDBPyConnection, items: Sequence[T]) -> list[T]: ...

    def messages(self, stored: Sequence[T]) -> list[OutboxMessage]: ...

    def index(self, indexer: IndexPort, items: Sequence[T], stored: Sequence[T]) -> None: ...

    def promised(self, stored: Sequence[T]) -> list[tuple[str, PushBody]]:
        """The pushes the new facts owe the tablets, built inside the store transaction
        and stored there (no lookups): what a crash right after the commit sends when the
        node starts again."""
        ...

    def pushes(self, stored: Sequence[T],
               promised: Sequence[tuple[str, PushBody]]) -> list[tuple[str, PushBody]]:
        """The pushes sent after the commit in place of ``promised`` (what
        :meth:`promised` built): the same, or completed by lookups (a new incident's most
        similar past one)."""
        ...


class FactWriter(Protocol):
    """The writer as its callers see it (the sync agent, the voice and alarm paths reach
    it through this, never through the node)."""

    def write(self, fact: Fact[T], items: Sequence[T], origin: str) -> list[T]: ...


class Writer:
    """Stores facts for one node (see the module docstring for the steps)."""

    def __init__(self, duck: DuckStore, *, sync_on: bool, wake: Callable[[], None],
                 indexer: Callable[[], IndexPort], push: PushPort,
                 drift: Callable[[], DriftPort] | None = None,
                 mark: Callable[[duckdb.DuckDBPyConnection, str, tuple[str, ...]], None]
                 = note_written) -> None:
        self.duck = duck
        self._mark = mark  # runs inside the store transaction: see step 1
        self.sync_on = sync_on
        self._wake = wake
        self._indexer = indexer  # a callable: the indexer loads the embedding model lazily
        self._push = push
        self._drift = drift
        self._observers: list[Callable[[WriteStep], None]] = []
        self._lock = threading.Lock()

    # -- observers ------------------------------------------------------------------------
    def observe(self, observer: Callable[[WriteStep], None]) -> Callable[[], None]:
        """Calls ``observer`` with every step of every write from now on; returns a
        function that stops it. Observers must be quick and must not raise."""
        with self._lock:
            self._observers.append(observer)

        def stop() -> None:
            with self._lock:
                if observer in self._observers:
                    self._observers.remove(observer)
        return stop

    @staticmethod
    def _start() -> None:
        """Marks the start of a write on this thread (its first step is timed from here)."""
        _marks.at = time.perf_counter()

    def _note(self, fact: Fact[Any], origin: str, step: str, ids: tuple[str, ...],
              count: int) -> None:
        # Each step's wall time (since the previous step of this write on this thread) goes
        # to the node's metrics: where a write's time goes, per kind of fact and step.
        now = time.perf_counter()
        seconds = now - getattr(_marks, "at", now)
        _marks.at = now
        WRITE_SECONDS.labels(fact.name, step).observe(seconds)
        with self._lock:
            observers = list(self._observers)
        for o in observers:
            try:
                o(WriteStep(fact.name, origin, step, ids, count, seconds))
            except Exception:
                log.exception("write observer failed")

    # -- the one path ---------------------------------------------------------------------
    def write(self, fact: Fact[T], items: Sequence[T], origin: str) -> list[T]:
        """Stores ``items`` and runs every later step; returns the newly stored ones."""
        self._start()
        ids = fact.ids(items)
        queue = self.sync_on and fact.to_outbox
        with self.duck.transaction() as cur:
            stored = fact.store(cur, items)
            queued = enqueue(cur, fact.messages(stored)) if queue and stored else 0
            drifts = bool(stored) and self._drift is not None and fact.drifts(cur, stored)
            self._mark(cur, fact.name, fact.ids(stored))
            promised = fact.promised(stored) if stored else []
            owed = self._push.hold(cur, promised)
        # Committed: cached briefings built from before it are stale from now on.
        touched = fact.touches(stored)
        self.duck.changes.touch(touched)
        new_ids = fact.ids(stored)
        self._note(fact, origin, "store", new_ids, len(stored))
        self._note(fact, origin, "outbox", new_ids, queued)
        if queued:
            self._wake()
        self._note(fact, origin, "wake_sync", new_ids, int(queued > 0))
        pushed = 0
        try:
            bodies = fact.pushes(stored, promised) if stored else []
        except Exception:  # a lookup that completes them failed: the promised ones go
            log.exception("building the pushes of %d %s facts failed", len(stored),
                          fact.name)
            bodies = promised
        try:  # one transaction for all (a bulk write's pushes: one disk flush, not one each)
            pushed = len(self._push.send_many(bodies, owed=owed))
        except Exception:  # still owed: sent when the node starts again
            log.exception("push of %d %s messages failed", len(bodies), fact.name)
        self._note(fact, origin, "push", new_ids, pushed)
        # Indexed after the push: the fact is in every briefing (DuckDB) once committed, and
        # indexing (embedding, a LanceDB append, a full-text refresh) would double the
        # push latency; search finds it milliseconds later.
        fact.index(self._indexer(), items, stored)
        self.duck.changes.touch(touched)  # again: what a briefing reads of LanceDB is in now
        self._note(fact, origin, "index", ids, len(items))
        refreshed = 0
        if drifts and self._drift is not None:
            for tenant in fact.tenants(stored):
                try:
                    self._drift().refresh(tenant)
                    refreshed += 1
                except Exception:  # the fact is stored; the next write refreshes again
                    log.exception("drift refresh of tenant %s failed", tenant)
        self._note(fact, origin, "drift", new_ids, refreshed)
        return stored

    def refresh_drift(self, tenant: str) -> None:
        """Recomputes drift alerts (after facts stored outside :meth:`write`, such as the
        manual sections of a bulk ingest)."""
        if self._drift is not None:
            self._drift().refresh(tenant)
