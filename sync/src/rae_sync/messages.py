"""One typed class per wire message. Each travels as the ``payload`` of an
:class:`~rae_sync.envelope.Envelope` whose ``type`` is the class's ``TYPE``, on the topic
``rae/v1/{tenant}/{site}/{node}/{up|down}/{TYPE}``.

Every class documents its wire form (the JSON of the payload); ``MESSAGE_TYPES`` maps each
``type`` to its class. Add a field with a default to extend a message; change its meaning
or remove it only with a new ``schema_version``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rae_sync.domain import AuditEntry, Correction, Feedback, Ident, Incident, UtcDatetime
from rae_sync.topics import Direction


class MessageType(StrEnum):
    """The ``type`` of an envelope, also the last level of its topic."""

    INCIDENT = "incident"
    CORRECTION = "correction"
    ACK = "ack"
    REPLAY_REQUEST = "replay_request"
    NODE_STATUS = "node_status"
    AUDIT_ENTRY = "audit_entry"
    DRIFT_ALERT = "drift_alert"
    RESUME = "resume"
    FEEDBACK = "feedback"


class Message(BaseModel):
    """Base of every payload: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[MessageType]
    #: the directions this message may travel in
    DIRECTIONS: ClassVar[frozenset[Direction]]


_UP = frozenset({Direction.UP})
_DOWN = frozenset({Direction.DOWN})
_BOTH = frozenset({Direction.UP, Direction.DOWN})


class IncidentMsg(Message):
    """An incident recorded on the node (edge → central).

    Wire form::

        {"incident": {"tenant_id": "acme", "id": "inc_…", "machine_id": "press-7",
                      "occurred_at": "2026-11-24T08:00:00Z", "error_code": "E404",
                      "symptom": "…", "action": "…", "source": "api",
                      "content_hash": "…"}}
    """

    TYPE: ClassVar[MessageType] = MessageType.INCIDENT
    DIRECTIONS: ClassVar[frozenset[Direction]] = _UP

    incident: Incident


class NodeRef(BaseModel):
    """One edge node: tenant, site, node."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: Ident
    site_id: Ident
    node_id: Ident


class CorrectionMsg(Message):
    """A correction (reflective memory). Up: made on this node. Down: made at another
    plant of the tenant and fanned out by central; ``origin`` names that node.

    Corrections are append-only facts, idempotent on ``correction.id``; two corrections of
    the same target both survive, ordered by ``correction.hlc``.

    Wire form::

        {"correction": {"tenant_id": "acme", "id": "cor_…", "machine_id": "press-7",
                        "text": "sensor X was actually loose", "author": "ana",
                        "target_id": "inc_…" | null, "method": "typed" | "voice",
                        "valid_from": "…", "valid_to": null, "origin_node": "node-1",
                        "audio_sha256": null, "hlc": "1764000000000-000000"},
         "origin": {"tenant_id": "acme", "site_id": "plant-1", "node_id": "node-1"} | null}
    """

    TYPE: ClassVar[MessageType] = MessageType.CORRECTION
    DIRECTIONS: ClassVar[frozenset[Direction]] = _BOTH

    correction: Correction
    origin: NodeRef | None = None


class AckMsg(Message):
    """Central has stored these messages durably (central → edge); the node may now drop
    them from its outbox. Also sent up by a node for down messages it has applied
    (e.g. fanned-out corrections), so central knows they arrived.

    Wire form::

        {"message_ids": ["msg_…", …], "seqs": [17, 18, …]}

    ``seqs`` are the sender's ``seq`` of the acked envelopes, in the same order as
    ``message_ids`` (either may be empty when the other says it all).

    Central acks every up message it has stored or found already stored (a duplicate),
    whatever its type: a node re-sends what is not acked (after a reconnect, and when no
    ack came for a while), so an ack withheld means the message comes again.
    """

    TYPE: ClassVar[MessageType] = MessageType.ACK
    DIRECTIONS: ClassVar[frozenset[Direction]] = _BOTH

    message_ids: tuple[str, ...] = ()
    seqs: tuple[int, ...] = ()

    @model_validator(mode="after")
    def _some(self) -> AckMsg:
        if not self.message_ids and not self.seqs:
            raise ValueError("an ack names at least one message_id or seq")
        if self.message_ids and self.seqs and len(self.message_ids) != len(self.seqs):
            raise ValueError("message_ids and seqs must be the same length when both are given")
        return self


class ReplayRequestMsg(Message):
    """Central saw a gap in a node's ``seq``: send ``from_seq``..``to_seq`` (inclusive)
    again (central → edge). The node re-sends the same envelopes (same ``message_id``),
    so a message that did arrive after all is a no-op.

    Wire form::

        {"from_seq": 17, "to_seq": 42, "reason": "gap"}
    """

    TYPE: ClassVar[MessageType] = MessageType.REPLAY_REQUEST
    DIRECTIONS: ClassVar[frozenset[Direction]] = _DOWN

    from_seq: int = Field(ge=1)
    to_seq: int = Field(ge=1)
    reason: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _range(self) -> ReplayRequestMsg:
        if self.to_seq < self.from_seq:
            raise ValueError(f"to_seq {self.to_seq} is below from_seq {self.from_seq}")
        return self


class NodeStatusMsg(Message):
    """The node's sync health, sent on connect and periodically (edge → central), for
    the admin console.

    Wire form::

        {"outbox_depth": 12, "outbox_limit": 1000000, "last_seq": 4711,
         "last_acked_seq": 4699, "oldest_unacked_at": "…" | null,
         "unknown_replay": [[3, 9]], "alerts": ["outbox above limit: 1200000 > 1000000"],
         "software_version": "0.1.0"}
    """

    TYPE: ClassVar[MessageType] = MessageType.NODE_STATUS
    DIRECTIONS: ClassVar[frozenset[Direction]] = _UP

    outbox_depth: int = Field(ge=0)
    outbox_limit: int | None = Field(default=None, ge=1)
    last_seq: int = Field(ge=0)
    last_acked_seq: int = Field(default=0, ge=0)
    oldest_unacked_at: UtcDatetime | None = None
    #: seq ranges central asked to replay that the node no longer holds
    unknown_replay: tuple[tuple[int, int], ...] = ()
    alerts: tuple[str, ...] = ()
    software_version: str = ""


class AuditEntryMsg(Message):
    """One line of the node's hash-chained audit log (edge → central), so central can
    verify the chain per node.

    Wire form::

        {"entry": {"tenant_id": "acme", "seq": 12, "at": "…", "actor": "…",
                   "action": "briefing.read", "resource": "…", "memory_ids": ["…"],
                   "prev_hash": "…", "hash": "…"}}
    """

    TYPE: ClassVar[MessageType] = MessageType.AUDIT_ENTRY
    DIRECTIONS: ClassVar[frozenset[Direction]] = _UP

    entry: AuditEntry


class DriftSection(BaseModel):
    """A manual section a drift alert's corrections contradict, with its text, so that
    central can show the evidence without the node's manuals."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    section: str | None = Field(default=None, max_length=500)
    text: str = Field(default="", max_length=20_000)


class DriftAlertMsg(Message):
    """A drift alert raised on the node: field corrections contradict a manual's fix
    (edge → central).

    Wire form::

        {"id": "drift_…", "tenant_id": "acme", "error_code": "E404", "status": "open",
         "summary": "…", "machine_ids": ["press-7"], "correction_ids": ["cor_…"],
         "manual_section_ids": ["…"], "created_at": "…",
         "manual_sections": [{"id": "…", "section": "4.2 …", "text": "Step 1: …"}]}
    """

    TYPE: ClassVar[MessageType] = MessageType.DRIFT_ALERT
    DIRECTIONS: ClassVar[frozenset[Direction]] = _UP

    id: str = Field(min_length=1, max_length=200)
    tenant_id: Ident
    error_code: str = Field(max_length=64)
    status: str = Field(max_length=32)
    summary: str = Field(max_length=10_000)
    machine_ids: tuple[str, ...] = ()
    correction_ids: tuple[str, ...] = ()
    manual_section_ids: tuple[str, ...] = ()
    created_at: UtcDatetime | None = None
    # The sections' texts (optional: a node may send the ids only).
    manual_sections: tuple[DriftSection, ...] = ()


class ResumeMsg(Message):
    """Sent up by a node on every connection: "send me what I have not applied since my
    position". Central keeps every down message (a fanned-out correction) owed to a node
    until that node acks applying it, and on this message sends all of them again, oldest
    first, whatever the broker still holds (central is the store of record; the broker is
    a transport). ``cursor`` is the highest down position (the ``seq`` of a fanned-out
    correction's envelope) the node has applied, ``applied`` how many down messages it
    has applied in all: both shown in central's console.

    Wire form::

        {"cursor": 1042, "applied": 371}
    """

    TYPE: ClassVar[MessageType] = MessageType.RESUME
    DIRECTIONS: ClassVar[frozenset[Direction]] = _UP

    cursor: int = Field(default=0, ge=0, le=2**63 - 1)
    applied: int = Field(default=0, ge=0, le=2**63 - 1)


class FeedbackMsg(Message):
    """A "this fixed it" / "not relevant" verdict on a memory. Up: recorded on this node.
    Down: recorded at another plant of the tenant and fanned out by central like a
    correction (a fix confirmed at three plants is stronger at every plant); ``origin``
    names that node. Idempotent on ``feedback.id``.

    Wire form::

        {"feedback": {"tenant_id": "acme", "id": "fb_…", "memory_id": "inc_…",
                      "verdict": "fixed" | "not_relevant", "query": "pump leaking" | null,
                      "machine_id": "press-7" | null, "author": "ana#…",
                      "origin_node": "node-1", "created_at": "…"},
         "origin": {"tenant_id": "acme", "site_id": "plant-1", "node_id": "node-1"} | null}
    """

    TYPE: ClassVar[MessageType] = MessageType.FEEDBACK
    DIRECTIONS: ClassVar[frozenset[Direction]] = _BOTH

    feedback: Feedback
    origin: NodeRef | None = None


MESSAGE_CLASSES: tuple[type[Message], ...] = (
    IncidentMsg, CorrectionMsg, AckMsg, ReplayRequestMsg, NodeStatusMsg, AuditEntryMsg,
    DriftAlertMsg, ResumeMsg, FeedbackMsg,
)
MESSAGE_TYPES: dict[MessageType, type[Message]] = {c.TYPE: c for c in MESSAGE_CLASSES}
