"""Outbox rows → wire messages.

The outbox ``kind`` is the message type (``incident``, ``correction``, ``audit_entry``,
``drift_alert``; ``audit`` is taken as ``audit_entry``); the payload is the domain object's
JSON. A row that does not make a valid message raises :class:`Unsendable` naming why.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from rae_sync.domain import AuditEntry, Correction, Feedback, Incident
from rae_sync.messages import (
    AuditEntryMsg,
    CorrectionMsg,
    DriftAlertMsg,
    FeedbackMsg,
    IncidentMsg,
    Message,
    MessageType,
)


class Unsendable(ValueError):
    """An outbox row that cannot become a message (kept aside with this reason)."""


def message_for(kind: str, payload: dict[str, Any], hlc: str) -> Message:
    """The message for one outbox row; a correction without a clock stamp gets ``hlc``."""
    try:
        if kind == MessageType.CORRECTION:
            if not payload.get("hlc"):
                payload = {**payload, "hlc": hlc}
            return CorrectionMsg(correction=Correction.model_validate(payload))
        if kind == MessageType.INCIDENT:
            return IncidentMsg(incident=Incident.model_validate(payload))
        if kind in (MessageType.AUDIT_ENTRY, "audit"):
            return AuditEntryMsg(entry=AuditEntry.model_validate(payload))
        if kind == MessageType.DRIFT_ALERT:
            return DriftAlertMsg.model_validate(payload)
        if kind == MessageType.FEEDBACK:
            return FeedbackMsg(feedback=Feedback.model_validate(payload))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise Unsendable(f"{kind} payload is invalid at {where}: {first['msg']}") from None
    raise Unsendable(f"unknown outbox kind {kind!r}")
