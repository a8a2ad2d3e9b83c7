"""DuckDB store: machines, incidents, corrections, documents, audit log, sync outbox, tokens.

One connection per process (DuckDB lets one process write a file); a lock serialises
writers, and every write commits before it returns, so an acknowledged write is on disk.
All SQL takes parameters; nothing is pasted into a query string.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import duckdb
import pyarrow as pa

from rae_edge.errors import SchemaTooNewError
from rae_edge.store.changes import ChangeCounters
from rae_edge.store.migrations import MIGRATIONS, SCHEMA_VERSION
from rae_edge.store.outbox import enqueue
from rae_sync.domain import Correction, CorrectionMethod, Incident, Machine
from rae_sync.messages import CorrectionMsg, IncidentMsg

# Corrections in hybrid-clock order, the same at every plant (two plants correcting one
# fix both keep theirs; the later stamp is the current fix). A local correction gets its
# stamp when the sync agent seals it, after every stamp this node has seen, so the few
# not stamped yet (or all of them with sync off) come last, by time.
_CORRECTION_ORDER = " ORDER BY hlc = '', hlc, valid_from, id"

_INCIDENT_COLUMNS = ("tenant_id", "id", "machine_id", "occurred_at", "error_code", "symptom",
                     "action", "source", "content_hash")
_INCIDENT_ARROW = pa.schema([
    ("tenant_id", pa.string()), ("id", pa.string()), ("machine_id", pa.string()),
    ("occurred_at", pa.timestamp("us", tz="UTC")), ("error_code", pa.string()),
    ("symptom", pa.string()), ("action", pa.string()), ("source", pa.string()),
    ("content_hash", pa.string())])


S = TypeVar("S")


class DuckStore:
    """The node's relational store (one file, ``node.duckdb``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # writers (transactions) and close
        self._local = threading.local()  # each thread's read cursor
        # Each tenant's machines (by QR code, by id), read once: every scan resolves a code
        # and the table is small; upsert_machines (its only writer) drops the tenant's entry.
        self._machines: dict[str, tuple[dict[str, Machine], dict[str, Machine]]] = {}
        # Its own lock (a reader must not wait for a writer's disk flush to resolve a QR
        # code) and a generation: a fill that read before an upsert committed is dropped.
        self._machines_lock = threading.Lock()
        self._machines_gen = 0
        # What each write changed, told after its commit (cached briefings check it).
        self.changes = ChangeCounters()
        self._shared: dict[type[Any], Any] = {}
        self._shared_lock = threading.Lock()
        self._con = duckdb.connect(str(path))
        self._migrate()

    # -- plumbing ---------------------------------------------------------------
    def shared(self, kind: type[S]) -> S:
        """The one ``kind()`` of this store, made on first use: state that everything
        using the store must share (the audit chain's head, the live tokens), living as
        long as the store."""
        with self._shared_lock:
            found = self._shared.get(kind)
            if found is None:
                found = self._shared[kind] = kind()
            return cast(S, found)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One atomic step: commits on success, rolls back on any error."""
        with self._lock:
            cur = self._con.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read (never a write: those go through :meth:`transaction`)."""
        return self._reader().execute(sql, list(params)).fetchall()

    def query_dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """:meth:`query` with each row as a dict by column name."""
        cur = self._reader().execute(sql, list(params))
        cols = [d[0] for d in cur.description or []]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def _reader(self) -> duckdb.DuckDBPyConnection:
        # Reads run on this thread's own cursor, outside the writers' lock: DuckDB gives
        # each statement the last committed snapshot (MVCC), so a briefing never waits
        # for a write's commit (its disk flush). Under the load test, with every read
        # behind that lock, scans queued for seconds at 1.3 of 2 cores.
        cur: duckdb.DuckDBPyConnection | None = getattr(self._local, "cur", None)
        if cur is None:
            with self._lock:
                cur = self._con.cursor()
            self._local.cur = cur
        return cur

    def schema_version(self) -> int:
        rows = self.query("SELECT value FROM meta WHERE key = 'schema_version'")
        return int(rows[0][0]) if rows else 0

    def _migrate(self) -> None:
        with self._lock:
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
            )
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise SchemaTooNewError(
                    f"{self.path} holds schema version {current}, but this release only knows "
                    f"up to {SCHEMA_VERSION}: install the newer release that wrote it"
                )
            for version, sql in MIGRATIONS:
                if version <= current:
                    continue
                with self.transaction() as cur:
                    cur.execute(sql)
                    cur.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(version)]
                    )
            self._con.execute("CHECKPOINT")

    # -- machines -----------------------------------------------------------------
    def upsert_machines(self, machines: Sequence[Machine]) -> None:
        with self._lock:
            try:
                with self.transaction() as cur:
                    for m in machines:
                        cur.execute(
                            """INSERT INTO machines (tenant_id, id, name, qr_code, site, line)
                               VALUES (?, ?, ?, ?, ?, ?)
                               ON CONFLICT (tenant_id, id) DO UPDATE SET name = excluded.name,
                                 qr_code = excluded.qr_code, site = excluded.site,
                                 line = excluded.line""",
                            [m.tenant_id, m.id, m.name, m.qr_code, m.site, m.line],
                        )
            finally:
                tenants = {m.tenant_id for m in machines}
                with self._machines_lock:
                    self._machines_gen += 1
                    for tenant in tenants:
                        self._machines.pop(tenant, None)
                self.changes.touch((t, None) for t in tenants)

    def _tenant_machines(self, tenant_id: str) -> tuple[dict[str, Machine], dict[str, Machine]]:
        # Every scan resolves its code here: a dict lookup, never behind the writers' lock
        # (under the load test scans queued there behind every commit's disk flush).
        hit = self._machines.get(tenant_id)
        if hit is not None:
            return hit
        with self._machines_lock:
            gen = self._machines_gen
        rows = self.query_dicts(
            "SELECT tenant_id, id, name, qr_code, site, line FROM machines "
            "WHERE tenant_id = ? ORDER BY id", [tenant_id])
        by_id = {str(r["id"]): Machine(**r) for r in rows}
        by_qr: dict[str, Machine] = {}
        for m in by_id.values():
            if m.qr_code is not None:
                by_qr.setdefault(m.qr_code, m)
        hit = (by_qr, by_id)
        with self._machines_lock:
            if self._machines_gen == gen:  # no upsert committed since the read
                self._machines[tenant_id] = hit
        return hit

    def get_machine(self, tenant_id: str, machine_id: str) -> Machine | None:
        return self._tenant_machines(tenant_id)[1].get(machine_id)

    def find_machine_by_qr(self, tenant_id: str, payload: str) -> Machine | None:
        """The machine whose QR code is ``payload`` or, failing that, whose id is."""
        by_qr, by_id = self._tenant_machines(tenant_id)
        return by_qr.get(payload) or by_id.get(payload)

    def list_machines(self, tenant_id: str) -> list[Machine]:
        rows = self.query_dicts(
            "SELECT tenant_id, id, name, qr_code, site, line FROM machines "
            "WHERE tenant_id = ? ORDER BY id",
            [tenant_id],
        )
        return [Machine(**r) for r in rows]

    # -- incidents ----------------------------------------------------------------
    def insert_incidents(
        self, incidents: Sequence[Incident], outbox: bool = False
    ) -> list[Incident]:
        """Stores the incidents not already stored (by content hash); returns the new ones.
        With ``outbox`` each new one is queued for sync in the same transaction. (The node
        stores facts through :class:`rae_edge.write.Writer`; this is for tools and tests.)"""
        with self.transaction() as cur:
            added = self.store_incidents(cur, incidents)
            if outbox:
                enqueue(cur, [IncidentMsg(incident=inc) for inc in added])
        self.changes.touch((i.tenant_id, i.machine_id) for i in added)
        return added

    @staticmethod
    def store_incidents(cur: duckdb.DuckDBPyConnection,
                        incidents: Sequence[Incident]) -> list[Incident]:
        """On the caller's transaction: stores the incidents not already stored (by
        content hash); returns the new ones. One set-based existence check and one bulk
        insert per call (an Arrow table scanned by DuckDB), not a statement per row: a
        6k-row log is one short transaction."""
        unique: dict[tuple[str, str], Incident] = {}
        for inc in incidents:
            unique.setdefault((inc.tenant_id, inc.id), inc)
        if not unique:
            return []
        # Registered Arrow tables live on this cursor, which the transaction closes
        # (unregistering inside a failed transaction would hide its error).
        cur.register("_new_keys", pa.table({
            "tenant_id": [t for t, _ in unique], "id": [i for _, i in unique]}))
        present = {(str(t), str(i)) for t, i in cur.execute(
            "SELECT i.tenant_id, i.id FROM incidents i JOIN _new_keys k "
            "ON i.tenant_id = k.tenant_id AND i.id = k.id").fetchall()}
        added = [inc for key, inc in unique.items() if key not in present]
        if not added:
            return []
        cols = _INCIDENT_COLUMNS
        table = pa.table({c: [getattr(inc, c) for inc in added] for c in cols},
                         schema=_INCIDENT_ARROW)
        cur.register("_new_incidents", table)
        cur.execute(f"INSERT INTO incidents ({', '.join(cols)}) "
                    f"SELECT {', '.join(cols)} FROM _new_incidents")
        return added

    def incidents_for_machine(
        self, tenant_id: str, machine_id: str, as_of: datetime | None = None, limit: int = 200
    ) -> list[Incident]:
        sql = (
            "SELECT tenant_id, id, machine_id, occurred_at, error_code, symptom, action, source, "
            "content_hash FROM incidents WHERE tenant_id = ? AND machine_id = ?"
        )
        params: list[Any] = [tenant_id, machine_id]
        if as_of is not None:
            sql += " AND occurred_at <= ?"
            params.append(as_of)
        sql += " ORDER BY occurred_at DESC LIMIT ?"
        params.append(limit)
        return [Incident(**r) for r in self.query_dicts(sql, params)]

    def get_incident(self, tenant_id: str, incident_id: str) -> Incident | None:
        rows = self.query_dicts(
            "SELECT tenant_id, id, machine_id, occurred_at, error_code, symptom, action, source, "
            "content_hash FROM incidents WHERE tenant_id = ? AND id = ?",
            [tenant_id, incident_id],
        )
        return Incident(**rows[0]) if rows else None

    def incidents_by_id(self, tenant_id: str, ids: Sequence[str]) -> list[Incident]:
        """The stored incidents among ``ids`` (one query for a list)."""
        if not ids:
            return []
        return [Incident(**r) for r in self.query_dicts(
            "SELECT tenant_id, id, machine_id, occurred_at, error_code, symptom, action, source, "
            "content_hash FROM incidents WHERE tenant_id = ? AND list_contains(?, id)",
            [tenant_id, list(ids)])]

    # -- corrections ----------------------------------------------------------------
    def insert_correction(self, c: Correction, outbox: bool = True) -> bool:
        """Stores a correction (idempotent on id); queues it for sync in the same
        transaction. Returns False when it was already stored. (The node stores facts
        through :class:`rae_edge.write.Writer`; this is for tools and tests.)"""
        with self.transaction() as cur:
            stored = self.store_correction(cur, c)
            if stored and outbox:
                enqueue(cur, [CorrectionMsg(correction=c)])
        self.changes.touch([(c.tenant_id, None)])
        return stored

    @staticmethod
    def store_correction(cur: duckdb.DuckDBPyConnection, c: Correction) -> bool:
        """On the caller's transaction: stores a correction unless its id is stored;
        returns whether it was new."""
        if cur.execute(
            "SELECT 1 FROM corrections WHERE tenant_id = ? AND id = ?", [c.tenant_id, c.id]
        ).fetchone():
            return False
        cur.execute(
            """INSERT INTO corrections (tenant_id, id, machine_id, text, author, target_id,
               method, valid_from, valid_to, origin_node, audio_sha256, hlc)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?)""",
            [c.tenant_id, c.id, c.machine_id, c.text, c.author, c.target_id, c.method.value,
             c.valid_from, c.valid_to, c.origin_node, c.audio_sha256, c.hlc],
        )
        return True

    def corrections_for_machine(
        self, tenant_id: str, machine_id: str, as_of: datetime | None = None
    ) -> list[Correction]:
        sql = (
            "SELECT tenant_id, id, machine_id, text, author, target_id, method, valid_from, "
            "valid_to, origin_node, audio_sha256, hlc FROM corrections "
            "WHERE tenant_id = ? AND machine_id = ?"
        )
        params: list[Any] = [tenant_id, machine_id]
        if as_of is not None:
            sql += " AND valid_from <= ?"
            params.append(as_of)
        sql += _CORRECTION_ORDER
        return [
            Correction(**{**r, "method": CorrectionMethod(r["method"])})
            for r in self.query_dicts(sql, params)
        ]

    def corrections_for_targets(
        self, tenant_id: str, target_ids: Sequence[str], as_of: datetime | None = None
    ) -> dict[str, list[Correction]]:
        """Corrections in force at ``as_of`` per amended memory id, oldest first."""
        if not target_ids:
            return {}
        sql = (
            "SELECT tenant_id, id, machine_id, text, author, target_id, method, valid_from, "
            "valid_to, origin_node, audio_sha256, hlc FROM corrections "
            "WHERE tenant_id = ? AND list_contains(?, target_id)"
        )
        params: list[Any] = [tenant_id, list(target_ids)]
        if as_of is not None:
            sql += " AND valid_from <= ?"
            params.append(as_of)
        sql += _CORRECTION_ORDER
        out: dict[str, list[Correction]] = {}
        for r in self.query_dicts(sql, params):
            c = Correction(**{**r, "method": CorrectionMethod(r["method"])})
            out.setdefault(str(c.target_id), []).append(c)
        return out

    # -- outbox (written by rae_edge.store.outbox.enqueue only) ----------------------------
    def outbox_depth(self) -> int:
        return int(self.query("SELECT count(*) FROM outbox")[0][0])

    def outbox_peek(self, limit: int) -> list[tuple[int, str, str, dict[str, Any]]]:
        rows = self.query(
            "SELECT seq, tenant_id, kind, payload FROM outbox ORDER BY seq LIMIT ?", [limit]
        )
        return [(int(s), str(t), str(k), json.loads(p)) for s, t, k, p in rows]

    def outbox_remove(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        with self.transaction() as cur:
            cur.execute("DELETE FROM outbox WHERE list_contains(?, seq)", [list(seqs)])
