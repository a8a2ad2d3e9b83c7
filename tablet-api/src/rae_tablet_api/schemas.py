"""Typed request bodies and answers of the tablet API that are not memory-service models
(those live in :mod:`rae_edge.memory.models` and are returned as they are)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from rae_sync.domain import Ident


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_or_none(value: datetime | None) -> datetime | None:
    """A query's ``as_of`` in UTC (naive means UTC)."""
    return None if value is None else _aware(value)


UtcDatetime = Annotated[datetime, AfterValidator(_aware)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MachineIn(_In):
    """A machine to register (or update, by id)."""

    id: Ident
    name: str = Field(min_length=1, max_length=200)
    qr_code: str = Field(min_length=1, max_length=500,
                         description="the payload printed on the machine's QR label")
    site: str = Field(default="", max_length=128)
    line: str | None = Field(default=None, max_length=128)


class IncidentIn(_In):
    """Something that happened to a machine, and what was done."""

    machine_id: Ident
    occurred_at: UtcDatetime = Field(description="ISO-8601; without a zone it is UTC")
    error_code: str | None = Field(default=None, max_length=64)
    symptom: str = Field(min_length=1, max_length=10_000)
    action: str | None = Field(default=None, max_length=10_000,
                               description="what fixed it (or was done)")
    source: str = Field(default="api", max_length=500)


class IncidentsOut(BaseModel):
    """The id of every incident sent (in order); ``new_ids`` those stored now (the others
    were stored before: the same content is never stored twice)."""

    ids: list[str]
    new_ids: list[str]
    added: int
    duplicates: int


class CorrectionIn(_In):
    """What the field learnt about a machine, optionally amending one memory."""

    machine_id: Ident
    text: str = Field(min_length=1, max_length=10_000)
    target_id: str | None = Field(default=None, max_length=200,
                                  description="the incident, manual section or correction "
                                              "it amends")


class JobOut(BaseModel):
    """A document ingest job: ``status`` queued, running, done or failed."""

    id: str
    kind: str
    status: str
    filename: str | None = None
    document_kind: str | None = None
    machine_id: str | None = None
    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime


class PushMessageOut(BaseModel):
    """One push message (also the WebSocket frame)."""

    cursor: int
    type: str = Field(description="briefing, incident, correction, voice_note or alarm")
    machine_id: str
    at: datetime
    data: dict[str, Any]


class PushPage(BaseModel):
    """Messages after a cursor (the HTTP form of ``WS /api/v1/push``)."""

    cursor: int = Field(description="pass it back as ?cursor= to get what follows")
    messages: list[PushMessageOut]
