"""Verifying the synced audit logs at central: each (tenant, node)'s entries in
``audit_entries`` checked with :func:`rae_central.audit_chain.verify_chain`.

Two modes:

- **full** (``rae-central audit verify``): every entry from the genesis hash, and every
  ``audit_entry`` message central acknowledged must still have its row (an entry removed
  from the end of a chain breaks no link, but its message is on record);
- **incremental** (the console): only the entries after the last verified one, chained
  from the hash remembered in ``audit_verified`` (migration ``0004``), plus a check that
  the remembered last entry is still there with that hash. Cheap enough to run on every
  console refresh; an edit further back is the full mode's to find.

Entries whose message lies above the node's contiguous seq watermark (``nodes.last_seq``)
are *pending*, not checked: one before them may still be on its way, and a hole that will
fill is not a break. A broken chain is never remembered as verified, so it keeps showing.
Each tenant runs in its own transaction under :func:`rae_central.rls.set_tenant`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import Connection

from rae_central.audit_chain import GENESIS, ChainReport, verify_chain
from rae_sync.domain import AuditEntry

if TYPE_CHECKING:
    from rae_central.store import CentralStore

AUDIT_TYPE = "audit_entry"  # messages.type of an AuditEntryMsg


@dataclass(frozen=True)
class NodeAudit:
    """One node's audit chain at central, as the console and the CLI show it."""

    tenant_id: str
    site_id: str
    node_id: str
    ok: bool
    entries: int  # entries verified, in total (earlier runs included)
    pending: int = 0  # entries above the seq watermark, not checked yet
    broken_seq: int | None = None
    reason: str = ""

    @property
    def node(self) -> str:
        return f"{self.tenant_id}/{self.site_id}/{self.node_id}"

    def line(self) -> str:
        if not self.ok:
            return f"broken at seq {self.broken_seq}: {self.reason}"
        tail = f", {self.pending} pending" if self.pending else ""
        noun = "entry" if self.entries == 1 else "entries"
        return f"audit chain ok ({self.entries} {noun}{tail})"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.line()}


def verify(store: CentralStore, tenant: str | None = None, *,
           incremental: bool = False) -> list[NodeAudit]:
    """Every node's chain of ``tenant`` (every enrolled tenant when ``None``)."""
    tenants = [tenant] if tenant else store.tenants()
    out: list[NodeAudit] = []
    for t in tenants:
        with store.tx(t) as conn:
            nodes = conn.execute(text(
                "SELECT site_id, node_id, last_seq FROM nodes WHERE tenant_id = :t "
                "UNION SELECT DISTINCT site_id, node_id, NULL::bigint FROM audit_entries a "
                "WHERE tenant_id = :t AND NOT EXISTS (SELECT 1 FROM nodes n WHERE "
                "n.tenant_id = a.tenant_id AND n.site_id = a.site_id AND n.node_id = a.node_id) "
                "ORDER BY 1, 2"), {"t": t}).all()
            for site, node, watermark in nodes:
                out.append(_verify_node(conn, (t, site, node), watermark, incremental))
    return out


def _verify_node(conn: Connection, key: tuple[str, str, str], watermark: int | None,
                 incremental: bool) -> NodeAudit:
    t, s, n = key
    p = {"t": t, "s": s, "n": n}
    state = conn.execute(text(
        "SELECT last_seq, last_hash, entries FROM audit_verified "
        "WHERE tenant_id = :t AND site_id = :s AND node_id = :n"), p).first()
    after, start, done = 0, GENESIS, 0
    if incremental and state is not None:
        after, start, done = int(state[0]), str(state[1]), int(state[2])
        still = conn.execute(text(
            "SELECT entry->>'hash' FROM audit_entries WHERE tenant_id = :t AND site_id = :s "
            "AND node_id = :n AND seq = :q"), {**p, "q": after}).scalar()
        if still != start:
            return NodeAudit(t, s, n, False, done, broken_seq=after, reason=(
                f"entry {after} was verified before and is now "
                f"{'gone' if still is None else 'changed'}"))
    rows = conn.execute(text(
        "SELECT a.seq, a.entry, m.seq, a.message_id FROM audit_entries a LEFT JOIN messages m "
        "ON m.message_id = a.message_id WHERE a.tenant_id = :t AND a.site_id = :s "
        "AND a.node_id = :n AND a.seq > :after ORDER BY a.seq"), {**p, "after": after}).all()
    entries: list[AuditEntry] = []
    pending = 0
    for seq, raw, msg_seq, _ in rows:
        if pending or (watermark is not None and msg_seq is not None and msg_seq > watermark):
            pending += 1  # it and all after it wait for the hole below to fill
            continue
        try:
            entries.append(AuditEntry.model_validate(raw))
        except ValidationError as exc:
            return NodeAudit(t, s, n, False, done, pending, int(seq),
                             f"entry {seq} is not a valid audit entry "
                             f"({exc.error_count()} errors)")
        if entries[-1].seq != int(seq):
            return NodeAudit(t, s, n, False, done, pending, int(seq),
                             f"the row of seq {seq} holds entry {entries[-1].seq}")
    report: ChainReport = verify_chain(entries, start_hash=start)
    if not report.ok:
        return NodeAudit(t, s, n, False, done + report.checked, pending,
                         report.first_broken_seq, report.reason)
    if not incremental:
        # In Python, not as an anti-join: right after a bulk sync the tables' statistics
        # are stale and the planner picked a nested loop (20k entries: 2 minutes).
        stored = {r[3] for r in rows}
        lost = next((int(m[0]) for m in conn.execute(text(
            "SELECT seq, message_id FROM messages WHERE tenant_id = :t AND site_id = :s "
            "AND node_id = :n AND type = :type ORDER BY seq"), {**p, "type": AUDIT_TYPE})
            if m[1] not in stored), None)
        if lost is not None:
            last = entries[-1].seq if entries else after
            return NodeAudit(t, s, n, False, done + report.checked, pending, last + 1,
                             f"an entry after seq {last} is missing: central received "
                             f"it in message seq {lost}")
    total = done + report.checked
    if entries:
        conn.execute(text(
            "INSERT INTO audit_verified (tenant_id, site_id, node_id, last_seq, last_hash, "
            "entries, checked_at) VALUES (:t, :s, :n, :q, :h, :e, now()) "
            "ON CONFLICT (tenant_id, site_id, node_id) DO UPDATE SET last_seq = :q, "
            "last_hash = :h, entries = :e, checked_at = now()"),
            {**p, "q": entries[-1].seq, "h": entries[-1].hash, "e": total})
    elif not incremental:  # a full run over an empty chain: nothing verified
        conn.execute(text("DELETE FROM audit_verified WHERE tenant_id = :t AND site_id = :s "
                          "AND node_id = :n"), p)
    return NodeAudit(t, s, n, True, total, pending)
