"""Answers kept per ``Idempotency-Key`` so that a write sent twice is stored once.

A tablet that lost its answer (Wi-Fi dead spot, app killed) sends the same request again
with the same key; the node answers the first result instead of storing a second copy.
One row per (tenant, key) in DuckDB; its ``status``:

- 0 (:data:`RUNNING`): the first request runs and has written nothing yet;
- -1 (:data:`WRITTEN`): its write is committed and its answer not kept yet. The writer
  sets it inside the write's own transaction (:func:`note_written`, for the key of the
  request being served, see :func:`serving`), so a node killed between the write and the
  kept answer leaves this, never a key that looks unused; ``body`` then lists what was
  stored (``[{"fact": "correction", "ids": [...]}]``);
- otherwise the first answer's status, with its content type and body.

Rows older than :data:`RETENTION` are dropped (a tablet offline for longer than that sends
fresh keys anyway: its queue is replayed within minutes of the network coming back).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from rae_edge.store.duck import DuckStore

RETENTION = timedelta(days=30)
_PURGE_EVERY_S = 3600.0
RUNNING = 0
WRITTEN = -1
WRITTEN_TYPE = "application/vnd.rae.written+json"


@dataclass
class ServedKey:
    """The key of the request being served, as the writer sees it. ``fingerprint`` gives
    the request body's hash (read whole before anything is written); ``written`` grows
    with each write of the request."""

    tenant_id: str
    key: str
    fingerprint: Callable[[], str]
    written: list[dict[str, Any]] = field(default_factory=list)


# Set by the API's middleware for the request it serves; copied into the handler's worker
# thread with the rest of the request's context.
_SERVED: ContextVar[ServedKey | None] = ContextVar("rae_idempotency_served", default=None)


@contextmanager
def serving(served: ServedKey) -> Iterator[ServedKey]:
    """Within it, every write of this context marks ``served``'s key written."""
    token = _SERVED.set(served)
    try:
        yield served
    finally:
        _SERVED.reset(token)


def note_written(cur: duckdb.DuckDBPyConnection, fact: str, ids: Sequence[str]) -> None:
    """Marks the served request's key (if any) :data:`WRITTEN`, inside the write's own
    transaction ``cur``. A key already answered is left as it is (a late write of a task
    the request started cannot replace its kept answer)."""
    served = _SERVED.get()
    if served is None:
        return
    served.written.append({"fact": fact, "ids": list(ids)})
    cur.execute("UPDATE idempotency_keys SET status = ?, fingerprint = ?, content_type = ?, "
                "body = ? WHERE tenant_id = ? AND key = ? AND status IN (?, ?)",
                [WRITTEN, served.fingerprint(), WRITTEN_TYPE,
                 json.dumps(served.written).encode(), served.tenant_id, served.key,
                 RUNNING, WRITTEN])


@dataclass(frozen=True)
class KeptAnswer:
    """The first answer given for a key (``status`` :data:`RUNNING` or :data:`WRITTEN`:
    the first request is still running or died with its process before answering)."""

    route: str
    fingerprint: str
    status: int
    content_type: str
    body: bytes


class IdempotencyStore:
    """Claims, completes and releases keys in the node's DuckDB (table ``idempotency_keys``)."""

    def __init__(self, duck: DuckStore) -> None:
        self.duck = duck
        self._purge_lock = threading.Lock()
        self._purged_at = 0.0

    def claim(self, tenant_id: str, key: str, route: str) -> KeptAnswer | None:
        """Claims ``key`` for a request now starting, or returns what the key holds.

        ``None``: the caller owns the key and must :meth:`complete` or :meth:`release` it.
        A row left at :data:`RUNNING` or :data:`WRITTEN` by a process that died is
        returned as is; the caller (who knows which keys are in flight in this process)
        may :meth:`take_over` a :data:`RUNNING` one (nothing was written) and must answer
        a :data:`WRITTEN` one without running the request again.
        """
        self._purge_old()
        with self.duck.transaction() as cur:
            row = cur.execute(
                "SELECT route, fingerprint, status, content_type, body FROM idempotency_keys "
                "WHERE tenant_id = ? AND key = ?", [tenant_id, key]).fetchone()
            if row is not None:
                return KeptAnswer(str(row[0]), str(row[1]), int(row[2]), str(row[3] or ""),
                                  bytes(row[4] or b""))
            cur.execute("INSERT INTO idempotency_keys (tenant_id, key, route, fingerprint) "
                        "VALUES (?, ?, ?, '')", [tenant_id, key, route])
        return None

    def take_over(self, tenant_id: str, key: str, route: str) -> None:
        """Restarts a key whose first request never answered (its process died)."""
        with self.duck.transaction() as cur:
            cur.execute("UPDATE idempotency_keys SET route = ?, fingerprint = '', status = ?, "
                        "content_type = NULL, body = NULL, created_at = now() "
                        "WHERE tenant_id = ? AND key = ? AND status = ?",
                        [route, RUNNING, tenant_id, key, RUNNING])

    def complete(self, tenant_id: str, key: str, fingerprint: str, status: int,
                 content_type: str, body: bytes) -> None:
        """Keeps the first answer; it is on disk when this returns."""
        with self.duck.transaction() as cur:
            cur.execute("UPDATE idempotency_keys SET fingerprint = ?, status = ?, "
                        "content_type = ?, body = ? WHERE tenant_id = ? AND key = ?",
                        [fingerprint, status, content_type, body, tenant_id, key])

    def release(self, tenant_id: str, key: str) -> None:
        """Forgets a claimed key whose answer is not kept (a fault, an auth refusal) unless
        its request wrote something (then a retry must not write again)."""
        with self.duck.transaction() as cur:
            cur.execute("DELETE FROM idempotency_keys WHERE tenant_id = ? AND key = ? "
                        "AND status = ?", [tenant_id, key, RUNNING])

    def _purge_old(self) -> None:
        now = time.monotonic()
        with self._purge_lock:
            if now - self._purged_at < _PURGE_EVERY_S:
                return
            self._purged_at = now
        with self.duck.transaction() as cur:
            cur.execute("DELETE FROM idempotency_keys WHERE created_at < ?",
                        [datetime.now(UTC) - RETENTION])
