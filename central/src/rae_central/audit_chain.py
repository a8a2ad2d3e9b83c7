"""Verifying an edge node's audit log at central.

Edges send their audit entries (outbox kind ``"audit"``, one :class:`AuditEntry` each).
Each tenant's entries form one hash chain on the node: every entry's ``hash`` covers its
fields and ``prev_hash``, and ``prev_hash`` is the hash of the tenant's previous entry (the
first one chains to :data:`GENESIS`). ``seq`` is the node's global counter, so one
tenant's seqs may skip numbers; the links, not the numbers, show a missing entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rae_sync.domain import AuditEntry

GENESIS = "0" * 64


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_broken_seq: int | None = None
    reason: str = ""


def verify_chain(entries: Iterable[AuditEntry], start_hash: str = GENESIS) -> ChainReport:
    """Checks one tenant's entries from one node, in any order they arrived: sorted by
    ``seq``, each must match its own hash and chain to the one before (``start_hash`` for
    the first, e.g. the last hash already verified in an earlier batch)."""
    ordered = sorted(entries, key=lambda e: e.seq)
    prev, tenant, last_seq = start_hash, None, 0
    for i, e in enumerate(ordered):
        if tenant is not None and e.tenant_id != tenant:
            return ChainReport(False, i, e.seq, f"entry {e.seq} belongs to tenant "
                               f"{e.tenant_id!r}, the chain to {tenant!r}")
        tenant = e.tenant_id
        if e.seq == last_seq:
            return ChainReport(False, i, e.seq, f"entry {e.seq} appears twice")
        digest = AuditEntry.compute_hash(e.prev_hash, e.seq, e.at, e.tenant_id, e.actor,
                                         e.action, e.resource, e.memory_ids)
        if digest != e.hash:
            return ChainReport(False, i, e.seq, f"entry {e.seq} does not match its hash")
        if e.prev_hash != prev:
            return ChainReport(False, i, e.seq, f"entry {e.seq} does not chain to the entry "
                               "before it: one is missing, edited or out of order")
        prev, last_seq = e.hash, e.seq
    return ChainReport(True, len(ordered))
