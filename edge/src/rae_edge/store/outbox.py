"""The outbox, written only here: typed ``rae_sync`` messages in, rows out.

A row is ``(tenant_id, kind, payload)``: ``kind`` is the message's type and ``payload`` the
JSON the sync agent's codec turns back into the same message when it seals the row
(:func:`rae_edge.sync_agent.codec.message_for`). Each message is validated here, inside
the transaction that stores its fact, so a bad one is refused with the write (the caller
gets the error, nothing is stored) and is never discovered at sealing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa
from pydantic import ValidationError

from rae_sync.messages import (
    AuditEntryMsg,
    CorrectionMsg,
    DriftAlertMsg,
    FeedbackMsg,
    IncidentMsg,
)

#: what may be queued for central (the ``up`` messages that carry facts)
OutboxMessage = IncidentMsg | CorrectionMsg | AuditEntryMsg | DriftAlertMsg | FeedbackMsg


class OutboxRefusedError(ValueError):
    """A message that cannot be queued (invalid, or of another tenant than its row)."""


def tenant_of(msg: OutboxMessage) -> str:
    if isinstance(msg, IncidentMsg):
        return msg.incident.tenant_id
    if isinstance(msg, CorrectionMsg):
        return msg.correction.tenant_id
    if isinstance(msg, AuditEntryMsg):
        return msg.entry.tenant_id
    if isinstance(msg, FeedbackMsg):
        return msg.feedback.tenant_id
    return msg.tenant_id


def payload_of(msg: OutboxMessage) -> dict[str, Any]:
    """The row payload: the domain object's JSON (the codec's input format)."""
    if isinstance(msg, IncidentMsg):
        return msg.incident.model_dump(mode="json")
    if isinstance(msg, CorrectionMsg):
        return msg.correction.model_dump(mode="json")
    if isinstance(msg, AuditEntryMsg):
        return msg.entry.model_dump(mode="json")
    if isinstance(msg, FeedbackMsg):
        return msg.feedback.model_dump(mode="json")
    return msg.model_dump(mode="json")


def _checked(msg: OutboxMessage) -> OutboxMessage:
    """Validates a message again (one built with ``model_construct`` skipped it)."""
    if not isinstance(msg, IncidentMsg | CorrectionMsg | AuditEntryMsg | DriftAlertMsg
                      | FeedbackMsg):
        raise OutboxRefusedError(f"{type(msg).__name__} is not a message for the outbox")
    try:
        return type(msg).model_validate(msg.model_dump())
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise OutboxRefusedError(f"{msg.TYPE} message is invalid at {where}: "
                                 f"{first['msg']}") from None


def enqueue(cur: duckdb.DuckDBPyConnection, messages: Sequence[OutboxMessage]) -> int:
    """Queues ``messages`` in order (their ``seq`` follows) on the caller's transaction;
    returns how many rows were written. One statement for the lot."""
    if not messages:
        return 0
    rows = [(tenant_of(m), str(m.TYPE), json.dumps(payload_of(m)))
            for m in map(_checked, messages)]
    if len(rows) == 1:
        cur.execute("INSERT INTO outbox (tenant_id, kind, payload) VALUES (?, ?, ?)",
                    list(rows[0]))
        return 1
    table = pa.table({"ord": list(range(len(rows))), "tenant_id": [r[0] for r in rows],
                      "kind": [r[1] for r in rows], "payload": [r[2] for r in rows]})
    cur.register("_new_outbox", table)  # lives on the transaction's cursor
    cur.execute("INSERT INTO outbox (tenant_id, kind, payload) "
                "SELECT tenant_id, kind, payload FROM _new_outbox ORDER BY ord")
    return len(rows)
