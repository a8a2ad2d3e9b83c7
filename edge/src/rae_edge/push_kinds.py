"""Typed push messages: one frozen class per kind of message a tablet receives.

The wire form of a push is ``{"cursor", "type", "machine_id", "at", "data"}`` (see
:mod:`rae_edge.push`); ``type`` is a class's ``TYPE`` and ``data`` its JSON. Every class
refuses unknown fields, so a payload can only carry what its class declares, and the JSON
Schemas generated from them (:mod:`rae_edge.push_schemas`) are committed in
``sync/schemas/push/`` beside the MQTT ones (``scripts/check_schemas.py`` fails CI when
they are stale). The tablet page reads only fields declared here.

A new kind: one class with its ``TYPE``, added to :data:`PUSH_CLASSES` (or, for a kind
defined beside its feature like ``alarm``, to :func:`rae_edge.push_schemas.all_push_classes`),
then ``scripts/check_schemas.py --write``. Add a field with a default to extend a kind.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from rae_sync.domain import Correction, Incident
from rae_sync.messages import NodeRef

SCHEMA_SUBDIR = "push"  # under sync/schemas/


class PushBody(BaseModel):
    """Base of every push message: frozen, unknown fields refused, always a machine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str]

    machine_id: str

    def data(self) -> dict[str, Any]:
        """The ``data`` of the wire form."""
        return self.model_dump(mode="json")


class CorrectionView(BaseModel):
    """A correction as a push shows it (the fields of the API's ``CorrectionOut``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    machine_id: str
    text: str
    author: str
    target_id: str | None = None
    method: str
    valid_from: datetime
    valid_to: datetime | None = None
    origin_node: str = ""
    kind: str = "correction"

    @classmethod
    def of(cls, c: Correction) -> CorrectionView:
        return cls(id=c.id, machine_id=c.machine_id, text=c.text, author=c.author,
                   target_id=c.target_id, method=c.method.value, valid_from=c.valid_from,
                   valid_to=c.valid_to, origin_node=c.origin_node)


class IncidentView(BaseModel):
    """An incident as a push shows it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    machine_id: str
    occurred_at: str
    error_code: str | None = None
    symptom: str
    action: str | None = None
    source: str | None = None

    @classmethod
    def of(cls, inc: Incident) -> IncidentView:
        return cls(id=inc.id, machine_id=inc.machine_id,
                   occurred_at=inc.occurred_at.isoformat(), error_code=inc.error_code,
                   symptom=inc.symptom, action=inc.action, source=inc.source)


class SimilarIncident(IncidentView):
    """The most similar earlier incident of the same machine, with what fixed it (the
    latest correction's text when one amends it)."""

    similarity: float
    corrections: tuple[CorrectionView, ...] = ()
    fix: str | None = None
    superseded_by: tuple[str, ...] = ()


class BriefingPush(PushBody):
    """A machine was scanned: its briefing in short."""

    TYPE: ClassVar[str] = "briefing"

    machine_name: str
    summary: str
    error_code: str | None = None
    incident_count: int
    drift_alerts: int


class IncidentPush(PushBody):
    """A new incident (API, ingest), with the most similar past incident and its fix;
    ``new_count`` says how many arrived together (an ingest job announces its newest)."""

    TYPE: ClassVar[str] = "incident"

    incident: IncidentView
    similar: SimilarIncident | None = None
    new_count: int = 1


class CorrectionPush(PushBody):
    """A correction stored on this node: typed, voiced or from another plant (``origin``
    names that plant's node; ``None`` for one made here)."""

    TYPE: ClassVar[str] = "correction"

    text: str
    target_id: str | None = None
    correction: CorrectionView
    origin: NodeRef | None = None


class VoiceNotePush(PushBody):
    """A voice note changed state: its transcript is ready (``draft``) or it failed."""

    TYPE: ClassVar[str] = "voice_note"

    voice_note_id: str
    status: str
    transcript: str | None = None
    reason: str | None = None

    def data(self) -> dict[str, Any]:
        # ``transcript`` with a draft, ``reason`` with a failure: absent otherwise
        return self.model_dump(mode="json", exclude_none=True)


PUSH_CLASSES: tuple[type[PushBody], ...] = (BriefingPush, IncidentPush, CorrectionPush,
                                            VoiceNotePush)
PUSH_TYPES: dict[str, type[PushBody]] = {c.TYPE: c for c in PUSH_CLASSES}
