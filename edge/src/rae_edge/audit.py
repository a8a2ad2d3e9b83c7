"""The append-only, hash-chained audit log (DuckDB table ``audit_log``).

Every entry holds the hash of the previous entry *of the same tenant* (one chain per
tenant, so central can verify a tenant's chain on its own); ``seq`` is global and
contiguous. The hash covers ``seq``, so an edited, deleted or reordered entry breaks the
chain at that point. Deleting the newest entries leaves a shorter but well-formed chain,
so each tenant's head (``seq`` and hash) is also kept in ``meta`` and compared.

Appends use a group commit: each caller queues its entry and waits; one of them (the
one holding the commit lock) writes every queued entry in one DuckDB transaction and
commits once, so a burst of concurrent API calls pays one disk flush instead of one
each, and every caller still returns only once its own entry is committed. The chain
heads (last ``seq``, each tenant's last hash) are kept in memory per store, loaded from
the table on first use and reloaded after any failed write: DuckDB lets one process
write the file, and within the process every append goes through the commit lock, so
nothing else can move the head (``seq`` is the primary key: a stale head could only
fail, never fork the chain).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from rae_edge.store.duck import DuckStore
from rae_edge.store.outbox import OutboxMessage, enqueue
from rae_edge.tokens import Principal
from rae_sync.domain import AuditEntry
from rae_sync.messages import AuditEntryMsg

GENESIS = "0" * 64
OUTBOX_KIND = "audit_entry"  # rae_sync.messages.MessageType.AUDIT_ENTRY; payload: AuditEntry
_HEAD_KEY = "audit_head:"  # meta key prefix; value "seq:hash"
_COLUMNS = 'seq, tenant_id, "at", actor, action, resource, memory_ids, prev_hash, hash'
MAX_MEMORY_IDS = 1000  # a huge answer records its first ids; the count goes in the action
MAX_BATCH = 256  # entries per group commit (the rest wait for the next one)
_INSERT = (f"INSERT INTO audit_log ({_COLUMNS}) SELECT " + ", ".join(
    f"unnest(?::{t}[])" for t in ("BIGINT", "VARCHAR", "TIMESTAMPTZ", "VARCHAR", "VARCHAR",
                                  "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR")))


def actor_of(principal: Principal) -> str:
    """How a caller appears in the log: ``name#hashprefix`` (the token is never stored)."""
    return f"{principal.name or principal.role.value}#{principal.token_hash[:12]}"


def memory_ids(body: Any, _depth: int = 0) -> Iterator[str]:
    """Every ``"id"`` string and every string in an ``"ids"`` list of a JSON document (an
    answer or a push message), in document order: the memory ids a read returned."""
    if _depth > 32:  # no answer of ours nests deeper; a hostile one must not recurse forever
        return
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "id" and isinstance(value, str):
                yield value
            elif key == "ids" and isinstance(value, list):
                yield from (v for v in value if isinstance(v, str))
            else:
                yield from memory_ids(value, _depth + 1)
    elif isinstance(body, list):
        for item in body:
            yield from memory_ids(item, _depth + 1)


@dataclass(frozen=True)
class AuditRequest:
    """One entry to append (:meth:`AuditLog.record_many`)."""

    tenant: str
    actor: str
    action: str
    resource: str = ""
    memory_ids: Sequence[str] = ()
    at: datetime | None = None


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`: ``ok``, how many entries were checked and, on a
    break, the first broken ``seq`` and what is wrong there."""

    ok: bool
    checked: int
    first_broken_seq: int | None = None
    reason: str = ""
    heads: dict[str, int] = field(default_factory=dict)


@dataclass(eq=False)
class _Pending:
    """One queued append: its fields, then (once written) its entry or the error."""

    tenant: str
    actor: str
    action: str
    resource: str
    ids: tuple[str, ...]
    at: datetime
    outbox: bool
    entry: AuditEntry | None = None
    error: BaseException | None = None
    done: bool = False  # set only once the entry is committed (or its write failed)


class _Chain:
    """The chain heads and the group-commit queue of one store (shared by every
    :class:`AuditLog` on it)."""

    def __init__(self) -> None:
        self.commit_lock = threading.Lock()  # held by the one caller writing a batch
        self.queue_lock = threading.Lock()
        self.queue: list[_Pending] = []
        self.seq: int | None = None  # None: not loaded (or stale after a failure)
        self.heads: dict[str, str] = {}


class Appender:
    """Appends entries inside a caller's transaction (:meth:`AuditLog.appending`)."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log
        self.seq: int | None = None  # the chain after what was added (None: nothing yet)
        self.heads: dict[str, str] = {}

    def add(self, cur: duckdb.DuckDBPyConnection, requests: Sequence[AuditRequest],
            ) -> list[AuditEntry]:
        if not requests:
            return []
        chain = self._log._chain
        seq, heads = ((self.seq, self.heads) if self.seq is not None
                      else (chain.seq, chain.heads))
        entries, self.seq, self.heads = self._log._insert(
            cur, [self._log._pending(r) for r in requests], seq, heads)
        return entries


class AuditLog:
    """Appends to and verifies one node's audit log.

    With ``outbox`` each new entry is also queued for sync (outbox kind ``"audit_entry"``,
    the entry as payload) in the same transaction, so central receives exactly what the
    node recorded."""

    def __init__(self, duck: DuckStore, outbox: bool = False) -> None:
        self.duck = duck
        self.outbox = outbox
        self._chain = duck.shared(_Chain)

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
        return self.record_many([AuditRequest(tenant, actor, action, resource, memory_ids,
                                              at)])[0]

    def record_many(self, requests: Sequence[AuditRequest]) -> list[AuditEntry]:
        """Appends entries (consecutive in the chain unless another caller's batch lands
        between two group commits) and returns them; on return all are committed. One
        call, one disk flush for up to :data:`MAX_BATCH` entries: e.g. a push message's
        delivery to every tablet watching its machine."""
        if not requests:
            return []
        mine = [self._pending(r) for r in requests]
        chain = self._chain
        with chain.queue_lock:
            chain.queue.extend(mine)
        while not mine[-1].done:  # the queue is written in order: the last is done last
            with chain.commit_lock:
                # While we waited, the previous holder may have written our entries already.
                if not mine[-1].done:
                    with chain.queue_lock:
                        batch = chain.queue[:MAX_BATCH]
                        del chain.queue[:MAX_BATCH]
                    self._write(batch)
        entries: list[AuditEntry] = []
        for p in mine:
            if p.error is not None:
                raise p.error
            assert p.entry is not None
            entries.append(p.entry)
        return entries

    def _pending(self, r: AuditRequest) -> _Pending:
        ids = tuple(dict.fromkeys(str(i) for i in r.memory_ids))[:MAX_MEMORY_IDS]
        when = (r.at or datetime.now(UTC)).astimezone(UTC)
        return _Pending(r.tenant, r.actor, r.action, r.resource, ids, when, self.outbox)

    @contextmanager
    def appending(self) -> Iterator[Appender]:
        """For a caller that writes entries inside its own transaction (the push bus: a
        message and the entries of its deliveries in one commit). Holds the chain's commit
        lock throughout, so enter it *before* the transaction begins; the appended entries
        count once that transaction has committed (the heads move on exit only then)::

            with audit.appending() as app, duck.transaction() as cur:
                ...; app.add(cur, requests)
        """
        chain = self._chain
        with chain.commit_lock:
            app = Appender(self)
            try:
                yield app
            except BaseException:
                chain.seq, chain.heads = None, {}  # rolled back: re-read the heads next time
                raise
            if app.seq is not None:
                chain.seq, chain.heads = app.seq, app.heads

    def _insert(self, cur: duckdb.DuckDBPyConnection, batch: Sequence[_Pending],
                seq: int | None, heads: dict[str, str],
                ) -> tuple[list[AuditEntry], int, dict[str, str]]:
        """Inserts ``batch`` after ``seq``/``heads`` (None: read them from the table);
        returns the entries and the new seq and heads. The caller commits."""
        if seq is None:
            seq, heads = _load_heads(cur)
        known = dict(heads)
        heads = dict(heads)
        rows: list[Any] = []
        outbox: list[OutboxMessage] = []
        entries: list[AuditEntry] = []
        for p in batch:
            seq += 1
            prev = heads.get(p.tenant, GENESIS)
            digest = AuditEntry.compute_hash(prev, seq, p.at, p.tenant, p.actor,
                                             p.action, p.resource, p.ids)
            entry = AuditEntry(tenant_id=p.tenant, seq=seq, at=p.at, actor=p.actor,
                               action=p.action, resource=p.resource, memory_ids=p.ids,
                               prev_hash=prev, hash=digest)
            entries.append(entry)
            heads[p.tenant] = digest
            rows += [seq, p.tenant, p.at, p.actor, p.action, p.resource, ids_text(p.ids),
                     prev, digest]
            if p.outbox:
                outbox.append(AuditEntryMsg(entry=entry))
        # One list per column (9 parameters whatever the batch size): binding 9 per row
        # cost more than the rest of a ten-entry append.
        cur.execute(_INSERT, [rows[k::9] for k in range(9)])
        last_seq = {e.tenant_id: e.seq for e in entries}
        for tenant, tenant_seq in last_seq.items():
            head = f"{tenant_seq}:{heads[tenant]}"
            if tenant in known:  # its meta row exists: a cheap in-place update
                cur.execute("UPDATE meta SET value = ? WHERE key = ?",
                            [head, _HEAD_KEY + tenant])
            else:
                cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            [_HEAD_KEY + tenant, head])
        enqueue(cur, outbox)  # typed, checked here: never found bad at sealing
        return entries, seq, heads

    def _write(self, batch: list[_Pending]) -> None:
        """Writes ``batch`` (in queue order) in one transaction; holds the commit lock."""
        chain = self._chain
        try:
            with self.duck.transaction() as cur:
                entries, seq, heads = self._insert(cur, batch, chain.seq, chain.heads)
        except BaseException as exc:
            chain.seq = None  # rolled back: re-read the heads from disk next time
            chain.heads = {}
            for p in batch:
                p.error, p.done = exc, True
            return
        chain.seq, chain.heads = seq, heads
        for p, e in zip(batch, entries, strict=True):
            p.entry, p.done = e, True

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
        with self._chain.commit_lock:  # no batch half-written while the chain is read
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


def _load_heads(cur: duckdb.DuckDBPyConnection) -> tuple[int, dict[str, str]]:
    """The last ``seq`` and each tenant's last hash, read from the entries themselves."""
    row = cur.execute("SELECT coalesce(max(seq), 0) FROM audit_log").fetchone()
    heads = cur.execute(
        "SELECT tenant_id, arg_max(hash, seq) FROM audit_log GROUP BY tenant_id").fetchall()
    return int(row[0] if row else 0), {str(t): str(h) for t, h in heads}


def ids_text(ids: Sequence[str]) -> str:
    """Memory ids as the ``memory_ids`` column stores them: one JSON array (see schema
    version 8 for why not a list column)."""
    return json.dumps(list(ids), separators=(",", ":"))


def stored_ids(value: Any) -> tuple[str, ...]:
    """The ids of a ``memory_ids`` value (JSON text; a list from older readers)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = json.loads(value)
    return tuple(str(i) for i in value)


def _entry(r: dict[str, Any]) -> AuditEntry:
    return AuditEntry(**{**r, "memory_ids": stored_ids(r["memory_ids"])})


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
        try:
            ids = stored_ids(r["memory_ids"])
        except ValueError:
            return broken(f"entry {seq} has unreadable memory ids: it was edited")
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
