"""Central's database operations, in terms of plain records (no wire classes here).

- nodes: enroll, revoke, look up the public key of an active node;
- :meth:`CentralStore.ingest` commits one batch of accepted messages in ONE transaction:
  the ``messages`` row (its primary key ``message_id`` makes a repeat a no-op), the memory
  rows (and verdicts), the node's seq tracking and the fan-out rows owed to the tenant's
  other nodes (corrections and verdicts: :data:`FANOUT_KINDS`);
- the down log: a fan-out row per (correction, other node) stays until THAT node acks
  applying it (an ``ack`` message up); a ``resume`` message (sent by a node on every
  connect) marks all its rows due again, and :meth:`CentralStore.claim_due_fanout` hands
  out what is due, a window per node, so nothing depends on what the broker holds;
- seq tracking: ``nodes.last_seq`` is the contiguous watermark; seqs above it wait in
  ``seq_pending`` until the hole below them fills; :meth:`CentralStore.due_replays`
  claims (once across all workers) the nodes whose gap has lasted past a grace period;
- dead letters, admin audit, and the read side of the admin console.

Every transaction is scoped to one tenant with :func:`rae_central.rls.set_tenant` (row
level security; the application connects as a role that cannot bypass it). A batch from
several tenants commits as one transaction per tenant. The few cross-tenant reads go
through the owner's narrow ``SECURITY DEFINER`` functions (:meth:`CentralStore.node_keys`,
:meth:`CentralStore.tenants`, the ``fleet_*`` operator views). Read methods that take an
optional tenant run unscoped without one: under the application's role they then see
nothing (only the owner, e.g. in tests, sees every tenant).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from rae_central.db.models import (
    AdminAudit,
    AuditRow,
    CorrectionRow,
    DeadLetter,
    Fanout,
    IncidentRow,
    Message,
    Node,
    SeqPending,
)
from rae_central.rls import set_tenant

NodeKey = tuple[str, str, str]  # (tenant, site, node)
AWAY_AFTER_S = 7 * 86_400.0  # the console's default horizon (ingest.away_after_s)
#: what is fanned out to the tenant's other nodes (a verdict: :mod:`rae_central.feedback`)
FANOUT_KINDS = ("correction", "feedback")

#: the order of corrections, the nodes' briefing order (``rae_edge.store.duck``): by hybrid
#: clock, then the origin's wall clock, then id. Two nodes' clocks can give the same stamp
#: (both counting on from a stamp they received), so the tie-break must match too.
CORRECTION_ORDER = (CorrectionRow.hlc, CorrectionRow.valid_from, CorrectionRow.id)

# Core tables for the hot inserts (no ORM bulk machinery on the ingest path).
_T_MESSAGES = cast(Table, Message.__table__)
_T_CORRECTIONS = cast(Table, CorrectionRow.__table__)
_T_INCIDENTS = cast(Table, IncidentRow.__table__)
_T_AUDIT = cast(Table, AuditRow.__table__)
_T_PENDING = cast(Table, SeqPending.__table__)
_T_FANOUT = cast(Table, Fanout.__table__)
_T_DEAD = cast(Table, DeadLetter.__table__)


def _pg_type(table: Table, column: str) -> str:
    t = table.c[column].type
    name = type(t).__name__.lower()
    if "datetime" in name or "timestamp" in name:
        return "timestamptz"
    if "biginteger" in name:
        return "bigint"
    if "integer" in name:
        return "integer"
    if "binary" in name or "bytea" in name:
        return "bytea"
    if "float" in name:
        return "double precision"
    return "text"


def _unnest_insert(table: Table, columns: Sequence[str], *, conflict: str | None = None,
                   returning: str | None = None) -> str:
    """``INSERT INTO t (cols) SELECT * FROM unnest(%(col1)s::type[], ...)``: a whole batch
    as one array per column, in ONE short statement that psycopg parses once (SQLAlchemy's
    insertmanyvalues builds a new multi-thousand-placeholder statement per page, and
    psycopg parsed each: a quarter of the worker's CPU). Run by :func:`_run_binary`."""
    arrays = ", ".join(f"CAST(%({c})s AS {_pg_type(table, c)}[])" for c in columns)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"
    if conflict:
        sql += f" ON CONFLICT {conflict} DO NOTHING"
    if returning:
        sql += f" RETURNING {returning}"
    return sql


def _run_binary(conn: Connection, sql: str, params: dict[str, list[Any]]) -> list[Any]:
    """Runs ``sql`` on the driver's cursor of ``conn``'s transaction with parameters in
    binary form (arrays of text go over as they are, no escaping in Python)."""
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute(sql, params, binary=True)
        return list(cur.fetchall()) if cur.description else []


def _columns(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> dict[str, list[Any]]:
    return {c: [r.get(c) for r in rows] for c in columns}


_MSG_COLS = ("message_id", "tenant_id", "site_id", "node_id", "seq", "type", "hlc",
             "received_at")
_COR_COLS = ("tenant_id", "id", "machine_id", "text", "author", "target_id", "method",
             "valid_from", "valid_to", "audio_sha256", "hlc", "origin_site", "origin_node",
             "message_id", "received_at")
_INC_COLS = ("tenant_id", "id", "machine_id", "occurred_at", "error_code", "symptom", "action",
             "source", "content_hash", "origin_site", "origin_node", "message_id",
             "received_at")
_PENDING_COLS = ("tenant_id", "site_id", "node_id", "seq", "at")
_FANOUT_COLS = ("id", "tenant_id", "site_id", "node_id", "topic", "payload", "created_at",
                "message_id", "sent_at")
_INSERT_MESSAGES = _unnest_insert(_T_MESSAGES, _MSG_COLS, conflict="(message_id)",
                                  returning="message_id")
_INSERT_CORRECTIONS = _unnest_insert(_T_CORRECTIONS, _COR_COLS, conflict="(tenant_id, id)")
_INSERT_INCIDENTS = _unnest_insert(_T_INCIDENTS, _INC_COLS, conflict="(tenant_id, id)")
_INSERT_PENDING = _unnest_insert(_T_PENDING, _PENDING_COLS,
                                 conflict="(tenant_id, site_id, node_id, seq)")
_INSERT_FANOUT = _unnest_insert(_T_FANOUT, _FANOUT_COLS)
# Due fan-out rows (see CentralStore.claim_due_fanout): per node, the oldest due rows
# up to the window less what is out unacked; the UPDATE re-checks each row under its lock,
# so of two workers claiming at once only one gets a row.
_CLAIM_DUE = """
WITH cand AS (
  SELECT f.id, f.site_id, f.node_id,
         (f.sent_at IS NOT NULL AND f.sent_at >= now() - make_interval(secs => :resend))
           AS out_now,
         (f.sent_at IS NULL OR (f.sent_at < now() - make_interval(secs => :resend)
                                AND n.last_seen > f.sent_at)) AS due
  FROM fanout f JOIN nodes n ON n.tenant_id = f.tenant_id AND n.site_id = f.site_id
   AND n.node_id = f.node_id AND n.revoked_at IS NULL
  WHERE (:all OR (f.site_id, f.node_id) IN (SELECT * FROM unnest(
          CAST(:sites AS text[]), CAST(:nodes AS text[]))))),
busy AS (SELECT site_id, node_id, count(*) AS n FROM cand WHERE out_now
         GROUP BY site_id, node_id),
ranked AS (
  SELECT c.id, row_number() OVER (PARTITION BY c.site_id, c.node_id ORDER BY c.id) AS k,
         coalesce(b.n, 0) AS busy
  FROM cand c LEFT JOIN busy b ON b.site_id = c.site_id AND b.node_id = c.node_id
  WHERE c.due)
UPDATE fanout f SET sent_at = now(), attempts = f.attempts + 1
FROM (SELECT id FROM ranked WHERE k + busy <= :window ORDER BY id LIMIT :limit) d
WHERE f.id = d.id AND (f.sent_at IS NULL
                       OR f.sent_at < now() - make_interval(secs => :resend))
RETURNING f.id, f.tenant_id, f.site_id, f.node_id, f.topic, f.payload
"""


def now() -> datetime:
    return datetime.now(UTC)


class NodeNotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class NodeStatus:
    outbox_depth: int
    lag_s: float


@dataclass(frozen=True)
class Accepted:
    """One verified message, reduced to what the database keeps.

    ``kind`` is ``correction``, ``incident``, ``audit``, ``status``, ``drift_alert``
    (:mod:`rae_central.drift_alerts`), ``feedback`` (:mod:`rae_central.feedback`) or
    anything else
    (kept in ``messages`` only). ``record`` holds the memory's columns for the first three.
    """

    node: NodeKey
    message_id: str
    seq: int
    hlc: str
    type: str
    kind: str
    record: dict[str, Any] = field(default_factory=dict)
    status: NodeStatus | None = None
    message: Any = None  # the typed wire message, for building fan-out
    payload: dict[str, Any] | None = None  # its validated wire form (the fan-out fast path)


@dataclass(frozen=True)
class FanoutItem:
    id: int
    node: NodeKey
    topic: str
    payload: bytes


@dataclass
class IngestOutcome:
    new: list[Accepted] = field(default_factory=list)
    duplicates: list[Accepted] = field(default_factory=list)
    fanout: list[FanoutItem] = field(default_factory=list)
    # nodes whose down rows may be due now: a resume, or acks that freed their window
    resumed: list[NodeKey] = field(default_factory=list)


@dataclass(frozen=True)
class Gap:
    node: NodeKey
    ranges: list[tuple[int, int]]  # inclusive seq ranges that are missing


# Builds the down message for one target node from one new correction or verdict, sealed
# with the given seq (the fan-out row's id, the node's down position): (topic, payload,
# message id).
FanoutBuilder = Callable[[Accepted, NodeKey, int], tuple[str, bytes, str]]


class CentralStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def tx(self, tenant: str | None) -> Iterator[Connection]:
        """One transaction scoped to ``tenant`` (``None``: unscoped, see the module doc)."""
        with self.engine.begin() as conn:
            if tenant is not None:
                set_tenant(conn, tenant)
            yield conn

    # -- nodes -----------------------------------------------------------------------------
    def enroll(self, node: NodeKey, public_key: str, actor: str = "cli") -> None:
        """Registers (or re-keys and un-revokes) a node."""
        tenant, site, node_id = node
        with self.tx(tenant) as conn:
            stmt = pg_insert(Node).values(tenant_id=tenant, site_id=site, node_id=node_id,
                                          public_key=public_key, enrolled_at=now())
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["tenant_id", "site_id", "node_id"],
                set_={"public_key": public_key, "enrolled_at": now(), "revoked_at": None}))
            self._admin_audit(conn, tenant, actor, "enroll", "/".join(node))

    def revoke(self, node: NodeKey, actor: str = "cli") -> datetime:
        tenant, site, node_id = node
        at = now()
        with self.tx(tenant) as conn:
            res = conn.execute(update(Node).where(
                Node.tenant_id == tenant, Node.site_id == site, Node.node_id == node_id,
            ).values(revoked_at=func.coalesce(Node.revoked_at, at)).returning(Node.revoked_at))
            row = res.first()
            if row is None:
                raise NodeNotFoundError(f"no enrolled node {'/'.join(node)}")
            self._admin_audit(conn, tenant, actor, "revoke", "/".join(node))
            return row[0] or at

    def active_keys(self) -> dict[NodeKey, str]:
        """Public keys of every enrolled, non-revoked node (unscoped: the owner's view;
        the application uses :meth:`node_keys`)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(Node.tenant_id, Node.site_id, Node.node_id,
                                       Node.public_key).where(Node.revoked_at.is_(None)))
            return {(r[0], r[1], r[2]): r[3] for r in rows}

    def node_keys(self, nodes: Iterable[NodeKey]) -> dict[NodeKey, tuple[str, bool]]:
        """``(public key, revoked)`` of each enrolled node among ``nodes``, in one query
        through ``rae_node_key`` (the lookup made before a message's tenant is trusted)."""
        nodes = sorted(set(nodes))
        if not nodes:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT u.t, u.s, u.n, k.public_key, k.revoked "
                "FROM unnest(CAST(:t AS text[]), CAST(:s AS text[]), CAST(:n AS text[])) "
                "AS u(t, s, n) CROSS JOIN LATERAL rae_node_key(u.t, u.s, u.n) k"),
                {"t": [n[0] for n in nodes], "s": [n[1] for n in nodes],
                 "n": [n[2] for n in nodes]}).all()
        return {(r[0], r[1], r[2]): (r[3], bool(r[4])) for r in rows}

    def tenants(self) -> list[str]:
        """Every enrolled tenant (``rae_tenants``): chores run tenant by tenant."""
        with self.engine.connect() as conn:
            return [str(t) for t in conn.execute(text("SELECT rae_tenants()")).scalars()]

    def node_state(self, node: NodeKey) -> str:
        """``active``, ``revoked`` or ``unknown``."""
        found = self.node_keys([node]).get(node)
        if found is None:
            return "unknown"
        return "revoked" if found[1] else "active"

    def record_read(self, tenant: str, actor: str, action: str, resource: str,
                    details: dict[str, Any] | None = None) -> None:
        """Audits one read of a tenant's content at the console (committed before the
        answer goes out)."""
        with self.tx(tenant) as conn:
            self._admin_audit(conn, tenant, actor, action, resource, details)

    def admin_audit(self, tenant: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest admin audit entries of a tenant (enroll, revoke, console reads)."""
        with self.tx(tenant) as conn:
            return [{"at": _iso(r.at), "actor": r.actor, "action": r.action,
                     "resource": r.resource, "details": r.details}
                    for r in Session(bind=conn).execute(select(AdminAudit).where(
                        AdminAudit.tenant_id == tenant).order_by(AdminAudit.id.desc())
                        .limit(limit)).scalars()]

    @staticmethod
    def _admin_audit(conn: Connection, tenant: str, actor: str, action: str,
                     resource: str, details: dict[str, Any] | None = None) -> None:
        conn.execute(pg_insert(AdminAudit).values(tenant_id=tenant, at=now(), actor=actor,
                                                  action=action, resource=resource,
                                                  details=details or {}))

    # -- ingest ----------------------------------------------------------------------------
    def ingest(self, batch: Sequence[Accepted], build_fanout: FanoutBuilder | None = None,
               ) -> IngestOutcome:
        """Commits ``batch``, one transaction per tenant; repeats of known message ids are
        no-ops (reported in ``duplicates`` so they are acknowledged again). A node's acks
        of down messages delete their fan-out rows; its resume marks its rows due."""
        out = IngestOutcome()
        # One row per message id even if the broker delivered it twice within the batch.
        unique: dict[str, Accepted] = {}
        for a in batch:
            unique.setdefault(a.message_id, a)
        by_tenant: dict[str, list[Accepted]] = {}
        for a in unique.values():
            by_tenant.setdefault(a.node[0], []).append(a)
        for tenant in sorted(by_tenant):
            with self.tx(tenant) as conn:
                self._ingest_tenant(conn, by_tenant[tenant], build_fanout, out)
        return out

    def _ingest_tenant(self, conn: Connection, part: list[Accepted],
                       build_fanout: FanoutBuilder | None, out: IngestOutcome) -> None:
        at = now()
        # Lock the batch's nodes in a fixed order: two workers never deadlock, and the
        # seq watermark of one node moves under one lock at a time.
        nodes = sorted({a.node for a in part})
        for n in nodes:
            conn.execute(select(Node.tenant_id).where(
                Node.tenant_id == n[0], Node.site_id == n[1], Node.node_id == n[2],
            ).with_for_update())
        res = _run_binary(conn, _INSERT_MESSAGES, {
            "message_id": [a.message_id for a in part], "tenant_id": [a.node[0] for a in part],
            "site_id": [a.node[1] for a in part], "node_id": [a.node[2] for a in part],
            "seq": [a.seq for a in part], "type": [a.type for a in part],
            "hlc": [a.hlc for a in part], "received_at": [at] * len(part)})
        fresh = {r[0] for r in res}
        new: list[Accepted] = []
        for a in part:
            if a.message_id in fresh:
                new.append(a)
            else:
                out.duplicates.append(a)
        out.new += new
        self._insert_memories(conn, new, at)
        for n in nodes:
            self._track(conn, n, [a for a in new if a.node == n],
                        [a for a in part if a.node == n], at)
        if build_fanout is not None:
            out.fanout += self._queue_fanout(conn, new, build_fanout, at)
        for a in new:
            if a.kind == "ack":
                if self._down_acked(conn, a) and a.node not in out.resumed:
                    out.resumed.append(a.node)
            elif a.kind == "resume":
                self._resume(conn, a, at)
                if a.node not in out.resumed:
                    out.resumed.append(a.node)

    @staticmethod
    def _insert_memories(conn: Connection, new: list[Accepted], at: datetime) -> None:
        def rows(kind: str) -> list[dict[str, Any]]:
            return [{**a.record, "tenant_id": a.node[0], "origin_site": a.node[1],
                     "origin_node": a.node[2], "message_id": a.message_id, "received_at": at}
                    for a in new if a.kind == kind]

        cors, incs = rows("correction"), rows("incident")
        if cors:
            # Corrections are append-only facts: a second copy of one id is the same fact.
            _run_binary(conn, _INSERT_CORRECTIONS, _columns(cors, _COR_COLS))
        if incs:
            _run_binary(conn, _INSERT_INCIDENTS, _columns(incs, _INC_COLS))
        audits = [{"tenant_id": a.node[0], "site_id": a.node[1], "node_id": a.node[2],
                   "seq": int(a.record["seq"]), "entry": a.record, "message_id": a.message_id,
                   "received_at": at} for a in new if a.kind == "audit"]
        if audits:
            conn.execute(pg_insert(_T_AUDIT).on_conflict_do_nothing(), audits)
        if any(a.kind == "feedback" for a in new):
            from rae_central.feedback import store_feedback

            store_feedback(conn, new, at)
        if any(a.kind == "drift_alert" for a in new):
            from rae_central.drift_alerts import store_alerts

            store_alerts(conn, new, at)

    @staticmethod
    def _track(conn: Connection, n: NodeKey, new: list[Accepted], seen: list[Accepted],
               at: datetime) -> None:
        where = (Node.tenant_id == n[0], Node.site_id == n[1], Node.node_id == n[2])
        values: dict[str, Any] = {"last_seen": at, "messages": Node.messages + len(new)}
        statuses = [a.status for a in seen if a.status is not None]
        if statuses:
            latest = max((a for a in seen if a.status is not None), key=lambda a: a.seq)
            assert latest.status is not None
            values.update(outbox_depth=latest.status.outbox_depth,
                          outbox_lag_s=latest.status.lag_s, status_at=at)
        if new:
            wm = conn.execute(select(Node.last_seq).where(*where)).scalar_one()
            above = sorted({a.seq for a in new if a.seq > wm})  # seq 0: not in the stream
            if above:
                _run_binary(conn, _INSERT_PENDING, {
                    "tenant_id": [n[0]] * len(above), "site_id": [n[1]] * len(above),
                    "node_id": [n[2]] * len(above), "seq": above, "at": [at] * len(above)})
                new_wm = wm
                while True:  # walk the contiguous run above the watermark
                    seqs = conn.execute(select(SeqPending.seq).where(
                        SeqPending.tenant_id == n[0], SeqPending.site_id == n[1],
                        SeqPending.node_id == n[2], SeqPending.seq > new_wm,
                    ).order_by(SeqPending.seq).limit(5000)).scalars().all()
                    moved = False
                    for s in seqs:
                        if s != new_wm + 1:
                            break
                        new_wm, moved = s, True
                    if not moved or len(seqs) < 5000 or new_wm != seqs[-1]:
                        break
                if new_wm > wm:
                    conn.execute(delete(SeqPending).where(
                        SeqPending.tenant_id == n[0], SeqPending.site_id == n[1],
                        SeqPending.node_id == n[2], SeqPending.seq <= new_wm))
                    values["last_seq"] = new_wm
                    values["replay_requested_at"] = None  # the gap (if any) has filled
                values["max_seq"] = func.greatest(Node.max_seq, above[-1])
        conn.execute(update(Node).where(*where).values(**values))

    def _queue_fanout(self, conn: Connection, new: list[Accepted], build: FanoutBuilder,
                      at: datetime) -> list[FanoutItem]:
        cors = [a for a in new if a.kind in FANOUT_KINDS]
        if not cors:
            return []
        tenants = sorted({a.node[0] for a in cors})
        peers: dict[str, list[NodeKey]] = {t: [] for t in tenants}
        for p in conn.execute(select(Node.tenant_id, Node.site_id, Node.node_id).where(
                Node.tenant_id.in_(tenants), Node.revoked_at.is_(None))):
            peers[p[0]].append((p[0], p[1], p[2]))
        pairs = [(a, peer) for a in cors for peer in peers[a.node[0]] if peer != a.node]
        if not pairs:
            return []
        # ids drawn first: each row's id is the seq its envelope is sealed with (the
        # node's down position), and is known without relying on RETURNING's order
        ids = conn.execute(text("SELECT nextval('fanout_id_seq') FROM generate_series(1, :n)"),
                           {"n": len(pairs)}).scalars().all()
        rows: list[dict[str, Any]] = []
        for i, (a, peer) in zip(ids, pairs, strict=True):
            topic, payload, message_id = build(a, peer, i)
            # sent_at: the worker publishes it right after this commit
            rows.append({"id": i, "tenant_id": peer[0], "site_id": peer[1],
                         "node_id": peer[2], "topic": topic, "payload": payload,
                         "created_at": at, "message_id": message_id, "sent_at": at})
        _run_binary(conn, _INSERT_FANOUT, _columns(rows, _FANOUT_COLS))
        return [FanoutItem(i, (r["tenant_id"], r["site_id"], r["node_id"]), r["topic"],
                           r["payload"]) for i, r in zip(ids, rows, strict=True)]

    @staticmethod
    def _down_acked(conn: Connection, a: Accepted) -> int:
        """The node applied these down messages: their rows go (only the sender's own)."""
        seqs = [int(x) for x in a.record.get("seqs", ())]
        mids = [str(x) for x in a.record.get("message_ids", ())]
        n = a.node
        if seqs and mids:
            sql = ("DELETE FROM fanout f USING unnest(CAST(:ids AS bigint[]), "
                   "CAST(:mids AS text[])) AS u(id, mid) WHERE f.tenant_id = :t AND "
                   "f.site_id = :s AND f.node_id = :n AND f.id = u.id AND f.message_id = u.mid")
        elif seqs:
            sql = ("DELETE FROM fanout WHERE tenant_id = :t AND site_id = :s AND "
                   "node_id = :n AND id = ANY(CAST(:ids AS bigint[]))")
        elif mids:
            sql = ("DELETE FROM fanout WHERE tenant_id = :t AND site_id = :s AND "
                   "node_id = :n AND message_id = ANY(CAST(:mids AS text[]))")
        else:
            return 0
        gone = int(conn.execute(text(sql), {"ids": seqs, "mids": mids, "t": n[0],
                                            "s": n[1], "n": n[2]}).rowcount)
        if gone:
            conn.execute(update(Node).where(
                Node.tenant_id == n[0], Node.site_id == n[1], Node.node_id == n[2],
            ).values(down_acked=Node.down_acked + gone))
        return gone

    @staticmethod
    def _resume(conn: Connection, a: Accepted, at: datetime) -> None:
        """The node (re)connected at its own position: everything still owed to it is due
        now, whatever the broker lost or still holds."""
        n = a.node
        conn.execute(update(Node).where(
            Node.tenant_id == n[0], Node.site_id == n[1], Node.node_id == n[2],
        ).values(down_cursor=int(a.record.get("cursor", 0)), resumed_at=at))
        conn.execute(update(Fanout).where(
            Fanout.tenant_id == n[0], Fanout.site_id == n[1], Fanout.node_id == n[2],
        ).values(sent_at=None))

    def claim_due_fanout(self, resend_after_s: float, window: int, limit: int = 5000,
                         nodes: Iterable[NodeKey] | None = None) -> list[FanoutItem]:
        """Fan-out rows to send now, oldest first, claimed by setting ``sent_at`` (two
        workers never take the same row): rows a resume made due, and rows sent more than
        ``resend_after_s`` ago to a node heard from since (it is up and did not ack them:
        the broker lost them). At most ``window`` rows per node are out unacked at a time
        (the broker's queue is no store). Tenant by tenant; ``nodes``: only these."""
        out: list[FanoutItem] = []
        wanted = sorted(set(nodes)) if nodes is not None else None
        tenants = sorted({n[0] for n in wanted}) if wanted is not None else self.tenants()
        for tenant in tenants:
            only = [n for n in wanted if n[0] == tenant] if wanted is not None else None
            with self.tx(tenant) as conn:
                rows = conn.execute(text(_CLAIM_DUE), {
                    "resend": resend_after_s, "window": window, "limit": limit,
                    "all": only is None, "sites": [n[1] for n in only or []],
                    "nodes": [n[2] for n in only or []]}).all()
            out += sorted((FanoutItem(r[0], (r[1], r[2], r[3]), r[4], bytes(r[5]))
                           for r in rows), key=lambda f: f.id)
        return out

    def fanout_unsent(self, items: Iterable[FanoutItem]) -> None:
        """Rows whose publish failed: due at the next sweep."""
        by_tenant: dict[str, list[int]] = {}
        for f in items:
            by_tenant.setdefault(f.node[0], []).append(f.id)
        for tenant, ids in by_tenant.items():
            with self.tx(tenant) as conn:
                conn.execute(update(Fanout).where(Fanout.id.in_(ids)).values(sent_at=None))

    def pending_down(self, node: NodeKey) -> list[int]:
        """Positions (fan-out ids) still owed to ``node``, oldest first."""
        with self.tx(node[0]) as conn:
            return [int(i) for i in conn.execute(select(Fanout.id).where(
                Fanout.tenant_id == node[0], Fanout.site_id == node[1],
                Fanout.node_id == node[2]).order_by(Fanout.id)).scalars()]

    # -- gaps and replays ------------------------------------------------------------------
    def gaps(self, node: NodeKey, limit: int = 100) -> list[tuple[int, int]]:
        """Missing inclusive seq ranges between the watermark and the highest seq seen."""
        with self.tx(node[0]) as conn:
            return self._gaps(conn, node, limit)

    @staticmethod
    def _gaps(conn: Connection, node: NodeKey, limit: int) -> list[tuple[int, int]]:
        row = conn.execute(select(Node.last_seq).where(
            Node.tenant_id == node[0], Node.site_id == node[1], Node.node_id == node[2],
        )).first()
        if row is None:
            return []
        prev = int(row[0])
        ranges: list[tuple[int, int]] = []
        for s in conn.execute(select(SeqPending.seq).where(
                SeqPending.tenant_id == node[0], SeqPending.site_id == node[1],
                SeqPending.node_id == node[2]).order_by(SeqPending.seq)).scalars():
            if s > prev + 1:
                ranges.append((prev + 1, s - 1))
                if len(ranges) >= limit:
                    break
            prev = s
        return ranges

    def due_replays(self, grace_s: float, every_s: float) -> list[Gap]:
        """Nodes whose oldest out-of-order seq waited longer than ``grace_s`` and that were
        not asked in the last ``every_s``: claimed atomically, so one worker asks. Tenant
        by tenant."""
        out: list[Gap] = []
        for tenant in self.tenants():
            out += self._due_replays(tenant, grace_s, every_s)
        return out

    def _due_replays(self, tenant: str, grace_s: float, every_s: float) -> list[Gap]:
        with self.tx(tenant) as conn:
            rows = conn.execute(text(
                "UPDATE nodes n SET replay_requested_at = now(), "
                "replay_requests = n.replay_requests + 1 "
                "FROM (SELECT tenant_id, site_id, node_id, min(at) AS oldest FROM seq_pending "
                "GROUP BY tenant_id, site_id, node_id) p "
                "WHERE n.tenant_id = p.tenant_id AND n.site_id = p.site_id "
                "AND n.node_id = p.node_id AND n.revoked_at IS NULL "
                "AND p.oldest < now() - make_interval(secs => :grace) "
                "AND (n.replay_requested_at IS NULL OR "
                "n.replay_requested_at < now() - make_interval(secs => :every)) "
                "RETURNING n.tenant_id, n.site_id, n.node_id"),
                {"grace": grace_s, "every": every_s}).all()
            return [Gap((r[0], r[1], r[2]), self._gaps(conn, (r[0], r[1], r[2]), 100))
                    for r in rows]

    # -- dead letters ----------------------------------------------------------------------
    def dead_letter(self, items: Sequence[tuple[str, bytes, str, NodeKey | None]]) -> None:
        """Keeps each ``(topic, payload, reason, node-or-None)`` with the time, under the
        topic's tenant; with no readable tenant under ``''`` (an INSERT-only policy: the
        operator's fleet view shows them)."""
        at = now()
        by_tenant: dict[str, list[dict[str, Any]]] = {}
        for topic, payload, reason, n in items:
            by_tenant.setdefault(n[0] if n else "", []).append(
                {"tenant_id": n[0] if n else "", "site_id": n[1] if n else "",
                 "node_id": n[2] if n else "", "topic": topic, "payload": payload,
                 "reason": reason, "at": at})
        for tenant, rows in by_tenant.items():
            with self.tx(tenant or None) as conn:
                # inline: no RETURNING id, which the INSERT-only policy of '' would refuse
                conn.execute(_T_DEAD.insert().inline(), rows)
                for r in rows:  # a node whose clock runs far ahead: shown in the console
                    if tenant and str(r["reason"]).startswith("clock_skew"):
                        conn.execute(update(Node).where(
                            Node.tenant_id == tenant, Node.site_id == r["site_id"],
                            Node.node_id == r["node_id"],
                        ).values(flag=str(r["reason"])[:500], flagged_at=at))

    # -- read side (admin console, tests) --------------------------------------------------
    def nodes_overview(self, tenant: str | None = None, away_after_s: float = AWAY_AFTER_S,
                       ) -> list[dict[str, Any]]:
        q = select(Node).order_by(Node.tenant_id, Node.site_id, Node.node_id)
        if tenant:
            q = q.where(Node.tenant_id == tenant)
        out: list[dict[str, Any]] = []
        with self.tx(tenant) as conn:
            down = {(r[0], r[1], r[2]): (int(r[3]), r[4]) for r in conn.execute(text(
                "SELECT tenant_id, site_id, node_id, count(*), min(created_at) FROM fanout "
                "GROUP BY tenant_id, site_id, node_id"))}
            pending = {(r[0], r[1], r[2]): int(r[3]) for r in conn.execute(text(
                "SELECT tenant_id, site_id, node_id, count(*) FROM seq_pending "
                "GROUP BY tenant_id, site_id, node_id"))}
            dead = {(r[0], r[1], r[2]): int(r[3]) for r in conn.execute(text(
                "SELECT tenant_id, site_id, node_id, count(*) FROM dead_letters "
                "GROUP BY tenant_id, site_id, node_id"))}
            for n in Session(bind=conn).execute(q).scalars():
                key = (n.tenant_id, n.site_id, n.node_id)
                missing = max(0, n.max_seq - n.last_seq - pending.get(key, 0))
                out.append({
                    "tenant_id": n.tenant_id, "site_id": n.site_id, "node_id": n.node_id,
                    "enrolled_at": _iso(n.enrolled_at), "revoked_at": _iso(n.revoked_at),
                    "last_seen": _iso(n.last_seen), "last_seq": n.last_seq,
                    "max_seq": n.max_seq, "missing_seqs": missing,
                    "gaps": self._gaps(conn, key, 20) if missing else [],
                    "messages": n.messages, "outbox_depth": n.outbox_depth,
                    "lag_s": n.outbox_lag_s, "status_at": _iso(n.status_at),
                    "replay_requests": n.replay_requests, "dead_letters": dead.get(key, 0),
                    **_downstream(n.last_seen, *down.get(key, (0, None)), n.down_cursor,
                                  n.down_acked, n.resumed_at, n.flag, n.flagged_at,
                                  away_after_s),
                })
        return out

    def dead_letters(self, limit: int = 100, tenant: str | None = None) -> list[dict[str, Any]]:
        q = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
        if tenant:
            q = q.where(DeadLetter.tenant_id == tenant)
        with self.tx(tenant) as conn:
            return [{"id": d.id, "tenant_id": d.tenant_id, "site_id": d.site_id,
                     "node_id": d.node_id, "topic": d.topic, "reason": d.reason,
                     "at": _iso(d.at), "size": len(d.payload),
                     "payload_head": bytes(d.payload[:200]).decode("utf-8", "replace")}
                    for d in Session(bind=conn).execute(q).scalars()]

    def recent_corrections(self, limit: int = 50, tenant: str | None = None,
                           ) -> list[dict[str, Any]]:
        q = select(CorrectionRow).order_by(CorrectionRow.received_at.desc(),
                                           CorrectionRow.hlc.desc()).limit(limit)
        if tenant:
            q = q.where(CorrectionRow.tenant_id == tenant)
        with self.tx(tenant) as conn:
            return [{"tenant_id": c.tenant_id, "id": c.id, "machine_id": c.machine_id,
                     "text": c.text, "author": c.author, "target_id": c.target_id,
                     "hlc": c.hlc, "origin": f"{c.origin_site}/{c.origin_node}",
                     "received_at": _iso(c.received_at), "embedded": c.embedded_at is not None}
                    for c in Session(bind=conn).execute(q).scalars()]

    def corrections_of(self, tenant: str, target_id: str) -> list[dict[str, Any]]:
        """All corrections of one target, oldest first by hybrid logical clock."""
        with self.tx(tenant) as conn:
            rows = Session(bind=conn).execute(select(CorrectionRow).where(
                CorrectionRow.tenant_id == tenant, CorrectionRow.target_id == target_id,
            ).order_by(*CORRECTION_ORDER)).scalars().all()
            return [{"id": c.id, "text": c.text, "hlc": c.hlc,
                     "origin": f"{c.origin_site}/{c.origin_node}"} for c in rows]

    def count(self, table: str, tenant: str | None = None) -> int:
        allowed = {"messages", "corrections", "incidents", "dead_letters", "fanout",
                   "audit_entries", "seq_pending", "nodes", "feedback"}
        if table not in allowed:
            raise ValueError(f"unknown table {table!r}")
        sql = f"SELECT count(*) FROM {table}" + (" WHERE tenant_id = :t" if tenant else "")
        with self.tx(tenant) as conn:
            return int(conn.execute(text(sql), {"t": tenant}).scalar_one())

    # -- the operator's fleet view (every tenant, no content) ------------------------------
    def fleet_overview(self, away_after_s: float = AWAY_AFTER_S) -> list[dict[str, Any]]:
        """Every node's health, as :meth:`nodes_overview` shapes it, through the
        ``rae_fleet_*`` functions: no memory content crosses a tenant."""
        with self.engine.connect() as conn:
            down = {(r["tenant_id"], r["site_id"], r["node_id"]): r for r in conn.execute(
                text("SELECT * FROM rae_fleet_downstream()")).mappings()}
            gaps: dict[NodeKey, list[tuple[int, int]]] = {}
            for g in conn.execute(text("SELECT * FROM rae_fleet_gaps(20)")):
                gaps.setdefault((g[0], g[1], g[2]), []).append((int(g[3]), int(g[4])))
            out = []
            for r in conn.execute(text("SELECT * FROM rae_fleet_nodes()")).mappings():
                key = (r["tenant_id"], r["site_id"], r["node_id"])
                missing = max(0, r["max_seq"] - r["last_seq"] - r["pending"])
                out.append({
                    "tenant_id": key[0], "site_id": key[1], "node_id": key[2],
                    "enrolled_at": _iso(r["enrolled_at"]), "revoked_at": _iso(r["revoked_at"]),
                    "last_seen": _iso(r["last_seen"]), "last_seq": r["last_seq"],
                    "max_seq": r["max_seq"], "missing_seqs": missing,
                    "gaps": gaps.get(key, []) if missing else [], "messages": r["messages"],
                    "outbox_depth": r["outbox_depth"], "lag_s": r["outbox_lag_s"],
                    "status_at": _iso(r["status_at"]), "replay_requests": r["replay_requests"],
                    "dead_letters": int(r["dead_letters"])})
                d = down.get(key)
                if d is not None:
                    out[-1].update(_downstream(
                        r["last_seen"], int(d["down_pending"]), d["down_oldest"],
                        int(d["down_cursor"]), int(d["down_acked"]), d["resumed_at"],
                        d["flag"], d["flagged_at"], away_after_s))
            return out

    def fleet_dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead letters of every tenant (``''``: tenant unknown) without their
        payloads."""
        with self.engine.connect() as conn:
            return [{"id": r["id"], "tenant_id": r["tenant_id"], "site_id": r["site_id"],
                     "node_id": r["node_id"], "topic": r["topic"], "reason": r["reason"],
                     "at": _iso(r["at"]), "size": r["size"]}
                    for r in conn.execute(text("SELECT * FROM rae_fleet_dead_letters(:n)"),
                                          {"n": limit}).mappings()]


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def _downstream(last_seen: datetime | None, pending: int, oldest: datetime | None,
                cursor: int, acked: int, resumed_at: datetime | None, flag: str | None,
                flagged_at: datetime | None, away_after_s: float) -> dict[str, Any]:
    """What a node still has to receive, and whether it has been away past the horizon
    (its rows are kept all the same: nothing is dropped)."""
    away = last_seen is None or last_seen < now() - timedelta(seconds=away_after_s)
    return {"down_pending": pending, "down_oldest_at": _iso(oldest), "down_cursor": cursor,
            "down_acked": acked, "resumed_at": _iso(resumed_at),
            "away": bool(away and (pending or last_seen is not None)),
            "flag": flag, "flagged_at": _iso(flagged_at)}


def stale_after(seconds: float) -> datetime:
    return now() - timedelta(seconds=seconds)
