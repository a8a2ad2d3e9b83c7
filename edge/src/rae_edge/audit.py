"""The append-only, hash-chained audit log (DuckDB table ``audit_log``).

Every entry holds the hash of the previous entry *of the same tenant* (one chain per
tenant, so central can verify a tenant's chain on its own); ``seq`` is global and
contiguous. The hash covers ``seq``, so an edited, deleted or reordered entry breaks the
chain at that point. Deleting the newest entries leaves a shorter but well-formed chain,
so each tenant's head (``seq`` and hash) is also kept in ``meta`` and compared.

The head is read and the entry appended in one DuckDB transaction under the store's
lock, so concurrent writers in the process cannot fork the chain (DuckDB lets one
process write the file, so no other process can interleave).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from rae_edge.store.duck import DuckStore
from rae_sync.domain import AuditEntry

GENESIS = "0" * 64
OUTBOX_KIND = "audit_entry"  # rae_sync.messages.MessageType.AUDIT_ENTRY; payload: AuditEntry
_HEAD_KEY = "audit_head:"  # meta key prefix; value "seq:hash"
_COLUMNS = 'seq, tenant_id, "at", actor, action, resource, memory_ids, prev_hash, hash'
MAX_MEMORY_IDS = 1000  # a huge answer records its first ids; the count goes in the action


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`: ``ok``, how many entries were checked and, on a
    break, the first broken ``seq`` and what is wrong there."""

    ok: bool
    checked: int
    first_broken_seq: int | None = None
    reason: str = ""
    heads: dict[str, int] = field(default_factory=dict)


class AuditLog:
    """Appends to and verifies one node's audit log.

    With ``outbox`` each new entry is also queued for sync (outbox kind ``"audit_entry"``,
    the entry as payload) in the same transaction, so central receives exactly what the
    node recorded."""

    def __init__(self, duck: DuckStore, outbox: bool = False) -> None:
        self.duck = duck
        self.outbox = outbox
        # DuckStore's own lock already serialises transactions; this one also covers
        # callers that hold a cursor of their own.
        self._lock = threading.RLock()

    def record(
        self,
        tenant: str,
        actor: str,
        action: str,
        resource: str = "",
        memory_ids: Sequence[str] = (),
        at: datetime | None = None,
    ) -> AuditEntry:
        """Appends one entry and returns it; on return it is committed to disk."""
        ids = tuple(dict.fromkeys(str(i) for i in memory_ids))[:MAX_MEMORY_IDS]
        when = (at or datetime.now(UTC)).astimezone(UTC)
        with self._lock, self.duck.transaction() as cur:
            entry = self._append(cur, tenant, actor, action, resource, ids, when)
            if self.outbox:
                cur.execute(
                    "INSERT INTO outbox (tenant_id, kind, payload) VALUES (?, ?, ?)",
                    [tenant, OUTBOX_KIND, entry.model_dump_json()],
                )
        return entry

    @staticmethod
    def _append(
        cur: duckdb.DuckDBPyConnection,
        tenant: str,
        actor: str,
        action: str,
        resource: str,
        ids: tuple[str, ...],
        when: datetime,
    ) -> AuditEntry:
        row = cur.execute("SELECT coalesce(max(seq), 0) FROM audit_log").fetchone()
        seq = int(row[0] if row else 0) + 1
        head = cur.execute(
            "SELECT hash FROM audit_log WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1", [tenant]
        ).fetchone()
        prev = str(head[0]) if head else GENESIS
        digest = AuditEntry.compute_hash(prev, seq, when, tenant, actor, action, resource, ids)
        entry = AuditEntry(tenant_id=tenant, seq=seq, at=when, actor=actor, action=action,
                           resource=resource, memory_ids=ids, prev_hash=prev, hash=digest)
        cur.execute(
            f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [seq, tenant, when, actor, action, resource, list(ids), prev, digest],
        )
        cur.execute(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", [_HEAD_KEY + tenant, f"{seq}:{digest}"]
        )
        return entry

    def entries(
        self, tenant: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditEntry]:
        """Entries in ``seq`` order (one tenant's, or all)."""
        sql = f"SELECT {_COLUMNS} FROM audit_log WHERE seq > ?"
        params: list[Any] = [after_seq]
        if tenant is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        return [_entry(r) for r in self.duck.query_dicts(sql, params)]

    def verify(self, tenant: str | None = None) -> VerifyReport:
        """Walks the entries in ``seq`` order and checks the chain (every tenant's, or one
        tenant's only: then the global seq gaps of other tenants are not its business, and
        its own links and head still show any missing entry); see :func:`verify_rows`."""
        with self._lock:
            if tenant is None:
                rows = self.duck.query_dicts(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq")
            else:
                rows = self.duck.query_dicts(
                    f"SELECT {_COLUMNS} FROM audit_log WHERE tenant_id = ? ORDER BY seq",
                    [tenant])
            heads = {
                str(k)[len(_HEAD_KEY):]: str(v)
                for k, v in self.duck.query(
                    "SELECT key, value FROM meta WHERE starts_with(key, ?)", [_HEAD_KEY]
                )
                if tenant is None or str(k) == _HEAD_KEY + tenant
            }
        return verify_rows(rows, heads, contiguous=tenant is None)


def _entry(r: dict[str, Any]) -> AuditEntry:
    return AuditEntry(**{**r, "memory_ids": tuple(r["memory_ids"] or ())})


def verify_rows(
    rows: Sequence[dict[str, Any]], heads: dict[str, str] | None = None,
    contiguous: bool = True,
) -> VerifyReport:
    """Checks audit rows given in storage order (ascending ``seq``):

    - ``seq`` runs 1, 2, 3, ... with no gap (a deleted entry leaves one);
    - each entry's hash is recomputed from its fields (an edit changes it; so does moving
      an entry to another ``seq``);
    - each entry's ``prev_hash`` is the hash of the tenant's previous entry;
    - each tenant's last entry is the head recorded in ``meta`` (deleting the newest
      entries is seen there).
    """
    last: dict[str, str] = {}
    last_seq: dict[str, int] = {}
    expected_seq = 1
    for i, r in enumerate(rows):
        seq = int(r["seq"])
        tenant = str(r["tenant_id"])

        def broken(why: str, seq: int = seq, i: int = i) -> VerifyReport:
            return VerifyReport(False, i, seq, why, dict(last_seq))

        if contiguous and seq != expected_seq:
            # Rows come sorted by a primary key, so a mismatch can only be a gap.
            return VerifyReport(False, i, expected_seq,
                                f"entry {expected_seq} is missing (next is {seq}): deleted",
                                dict(last_seq))
        ids = tuple(r["memory_ids"] or ())
        at = r["at"]
        digest = AuditEntry.compute_hash(str(r["prev_hash"]), seq, at, tenant, str(r["actor"]),
                                         str(r["action"]), str(r["resource"]), ids)
        if digest != r["hash"]:
            return broken(f"entry {seq} does not match its hash: it was edited or moved")
        if r["prev_hash"] != last.get(tenant, GENESIS):
            return broken(f"entry {seq} does not chain to tenant {tenant!r}'s previous entry: "
                          "an entry before it was deleted, edited or reordered")
        last[tenant] = str(r["hash"])
        last_seq[tenant] = seq
        expected_seq += 1
    if heads is not None:
        for tenant, head in sorted(heads.items()):
            seq_text, _, digest = head.partition(":")
            if last.get(tenant) != digest:
                have = last_seq.get(tenant, 0)
                return VerifyReport(
                    False, len(rows),
                    min(expected_seq, int(seq_text)) if contiguous else have + 1,
                    f"tenant {tenant!r}'s chain should end at entry {seq_text}, but its last "
                    f"entry is {have or 'none'}: the newest entries were deleted or edited",
                    dict(last_seq))
        extra = sorted(set(last) - set(heads))
        if extra:
            return VerifyReport(False, len(rows), last_seq[extra[0]],
                                f"tenant {extra[0]!r} has entries but no recorded head: "
                                "they were inserted outside the audit log", dict(last_seq))
    return VerifyReport(True, len(rows), None, "", dict(last_seq))
