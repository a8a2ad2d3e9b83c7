"""Verdicts at central: "this fixed it" / "not relevant" (:class:`rae_sync.domain.Feedback`)
recorded at one plant, kept in ``feedback`` (migration ``0006``, under the tenant policy)
and fanned out to the tenant's other nodes like a correction, so a fix confirmed at three
plants is stronger at every plant.

- :func:`record_of` reduces an up :class:`~rae_sync.messages.FeedbackMsg` to its row; the
  plant is the sender's (signed envelope), whatever the payload's ``origin_node`` says: a
  node speaks for itself only, so it cannot inflate another plant's confirmations;
- :func:`store_feedback` inserts the new verdicts inside the ingest's tenant transaction
  (:meth:`rae_central.store.CentralStore.ingest`); a verdict id seen before is a no-op
  (a message id seen before never gets here);
- :func:`down_payload` is the fanned-out message's payload (the sender as ``origin``);
- :func:`recent_feedback` is the console's read side.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from rae_central.db.models import FeedbackRow
from rae_sync.messages import FeedbackMsg

if TYPE_CHECKING:
    from rae_central.store import Accepted, CentralStore, NodeKey

KIND = "feedback"  # Accepted.kind of a FeedbackMsg
_T_FEEDBACK = cast(Table, FeedbackRow.__table__)


def record_of(msg: FeedbackMsg) -> dict[str, Any]:
    """The row's columns that come from the verdict itself."""
    f = msg.feedback
    return {"id": f.id, "memory_id": f.memory_id, "verdict": f.verdict.value,
            "query": f.query, "machine_id": f.machine_id, "author": f.author,
            "created_at": f.created_at}


def store_feedback(conn: Connection, new: Sequence[Accepted], at: datetime) -> int:
    """Inserts the verdicts among ``new`` (one tenant's, in its transaction); returns how
    many rows were new."""
    rows = [{**a.record, "tenant_id": a.node[0], "origin_site": a.node[1],
             "origin_node": a.node[2], "hlc": a.hlc, "message_id": a.message_id,
             "received_at": at} for a in new if a.kind == KIND]
    if not rows:
        return 0
    res = conn.execute(pg_insert(_T_FEEDBACK).on_conflict_do_nothing(
        index_elements=["tenant_id", "id"]).returning(_T_FEEDBACK.c.id), rows)
    return len(res.all())


def down_payload(a: Accepted) -> dict[str, Any]:
    """The verdict in ``a`` as it goes down to another plant: its plant and ``origin``
    are the sender's."""
    assert a.payload is not None
    origin = _origin(a.node)
    feedback = {**a.payload["feedback"], "origin_node": f"{a.node[1]}/{a.node[2]}"}
    return {**a.payload, "feedback": feedback, "origin": origin}


def _origin(node: NodeKey) -> dict[str, str]:
    return {"tenant_id": node[0], "site_id": node[1], "node_id": node[2]}


def recent_feedback(store: CentralStore, tenant: str | None, limit: int = 50,
                    ) -> list[dict[str, Any]]:
    """The newest verdicts received (a tenant's; unscoped without one: see
    :mod:`rae_central.store`), with who, when and where."""
    q = select(_T_FEEDBACK).order_by(_T_FEEDBACK.c.received_at.desc(),
                                     _T_FEEDBACK.c.hlc.desc()).limit(limit)
    if tenant:
        q = q.where(_T_FEEDBACK.c.tenant_id == tenant)
    with store.tx(tenant) as conn:
        return [{"tenant_id": r.tenant_id, "id": r.id, "memory_id": r.memory_id,
                 "verdict": r.verdict, "query": r.query, "machine_id": r.machine_id,
                 "author": r.author, "created_at": r.created_at.isoformat(),
                 "origin": f"{r.origin_site}/{r.origin_node}", "hlc": r.hlc,
                 "received_at": r.received_at.isoformat()}
                for r in conn.execute(q)]
