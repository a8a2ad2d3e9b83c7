"""Answers kept per ``Idempotency-Key`` so that a write sent twice is stored once.

A tablet that lost its answer (Wi-Fi dead spot, app killed) sends the same request again
with the same key; the node answers the first result instead of storing a second copy.
One row per (tenant, key) in DuckDB: ``status`` is 0 while the first request runs, then
the first answer's status, content type and body. Rows older than :data:`RETENTION` are
dropped (a tablet offline for longer than that sends fresh keys anyway: its queue is
replayed within minutes of the network coming back).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rae_edge.store.duck import DuckStore

RETENTION = timedelta(days=30)
_PURGE_EVERY_S = 3600.0


@dataclass(frozen=True)
class KeptAnswer:
    """The first answer given for a key (``status`` 0: the first request is still running
    or died with its process before answering)."""

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
        A row left at status 0 by a process that died is returned as is; the caller (who
        knows which keys are in flight in this process) may :meth:`take_over` it.
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
            cur.execute("UPDATE idempotency_keys SET route = ?, fingerprint = '', status = 0, "
                        "content_type = NULL, body = NULL, created_at = now() "
                        "WHERE tenant_id = ? AND key = ?", [route, tenant_id, key])

    def complete(self, tenant_id: str, key: str, fingerprint: str, status: int,
                 content_type: str, body: bytes) -> None:
        """Keeps the first answer; it is on disk when this returns."""
        with self.duck.transaction() as cur:
            cur.execute("UPDATE idempotency_keys SET fingerprint = ?, status = ?, "
                        "content_type = ?, body = ? WHERE tenant_id = ? AND key = ?",
                        [fingerprint, status, content_type, body, tenant_id, key])

    def release(self, tenant_id: str, key: str) -> None:
        """Forgets a claimed key whose answer is not kept (a fault, an auth refusal)."""
        with self.duck.transaction() as cur:
            cur.execute("DELETE FROM idempotency_keys WHERE tenant_id = ? AND key = ? "
                        "AND status = 0", [tenant_id, key])

    def _purge_old(self) -> None:
        now = time.monotonic()
        with self._purge_lock:
            if now - self._purged_at < _PURGE_EVERY_S:
                return
            self._purged_at = now
        with self.duck.transaction() as cur:
            cur.execute("DELETE FROM idempotency_keys WHERE created_at < ?",
                        [datetime.now(UTC) - RETENTION])
