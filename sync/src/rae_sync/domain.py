"""Domain types that cross the wire: frozen, validated pydantic models.

Memory comes in three kinds, after how people remember:
- episodic: :class:`Incident` (what happened to one machine, when, and what was done);
- semantic: :class:`DocumentChunk` (what the manuals and reports say);
- reflective: :class:`Correction` (what the field learnt later; it amends another memory and
  closes that memory's validity instead of deleting it).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def _check_id(value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError(
            f"invalid identifier {value!r}: use 1-128 letters, digits, '.', '_', ':' or '-'"
        )
    return value


def _aware(value: datetime) -> datetime:
    # Naive timestamps are ambiguous across plants in different zones: treat them as UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


Ident = Annotated[str, AfterValidator(_check_id)]
UtcDatetime = Annotated[datetime, AfterValidator(_aware)]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def content_hash(*parts: object) -> str:
    """Stable sha256 of the given parts; whitespace and case are folded so the same
    content typed twice hashes the same."""
    h = hashlib.sha256()
    for part in parts:
        text = "" if part is None else str(part)
        text = " ".join(text.split()).casefold()
        h.update(text.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()


_last_ms = 0
_counter = 0


def new_id(prefix: str) -> str:
    """A unique, time-ordered id: ``prefix_`` + 12 hex of milliseconds + 4 hex counter +
    8 hex random. Sorting ids sorts them by creation time within one process."""
    global _last_ms, _counter
    ms = int(time.time() * 1000)
    if ms <= _last_ms:
        _counter += 1
        ms = _last_ms
    else:
        _counter = 0
    _last_ms = ms
    return f"{prefix}_{ms:012x}{_counter & 0xFFFF:04x}{os.urandom(4).hex()}"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Role(StrEnum):
    """What a token may do: technician < supervisor < admin."""

    TECHNICIAN = "technician"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class MemoryKind(StrEnum):
    """The kinds of searchable memory."""

    INCIDENT = "incident"
    MANUAL = "manual"
    SHIFT = "shift"
    WORKORDER = "workorder"
    CORRECTION = "correction"


class CorrectionMethod(StrEnum):
    """How a correction was made."""

    TYPED = "typed"
    VOICE = "voice"


class Tenant(_Frozen):
    """A customer; nothing crosses tenants."""

    id: Ident
    name: str = Field(min_length=1, max_length=200)


class Site(_Frozen):
    """One plant of a tenant."""

    tenant_id: Ident
    id: Ident
    name: str = Field(min_length=1, max_length=200)


class Machine(_Frozen):
    """A machine on the floor; ``qr_code`` is the payload printed on its label."""

    tenant_id: Ident
    id: Ident
    name: str = Field(min_length=1, max_length=200)
    qr_code: str = Field(min_length=1, max_length=500)
    site: str = Field(default="", max_length=128)
    line: str | None = Field(default=None, max_length=128)


class Incident(_Frozen):
    """Episodic memory: something that happened to one machine, and what was done.

    ``content_hash`` covers machine, time, code, symptom and action, so the same row
    ingested twice is one incident; ``id`` derives from it.
    """

    tenant_id: Ident
    machine_id: Ident
    occurred_at: UtcDatetime
    error_code: str | None = Field(default=None, max_length=64)
    symptom: str = Field(min_length=1, max_length=10_000)
    action: str | None = Field(default=None, max_length=10_000)
    source: str = Field(default="api", max_length=500)
    content_hash: str = ""
    id: str = ""

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            occurred = data.get("occurred_at")
            if isinstance(occurred, datetime):
                occurred = _aware(occurred).isoformat()
            elif isinstance(occurred, str):
                occurred = _aware(datetime.fromisoformat(occurred)).isoformat()
            if not data.get("content_hash"):
                data["content_hash"] = content_hash(
                    data.get("tenant_id"),
                    data.get("machine_id"),
                    occurred,
                    data.get("error_code"),
                    data.get("symptom"),
                    data.get("action"),
                )
            if not data.get("id"):
                data["id"] = "inc_" + str(data["content_hash"])[:24]
        return data


class DocumentChunk(_Frozen):
    """Semantic memory: one section of a manual, report or work order, page-aware."""

    tenant_id: Ident
    id: str
    document_id: str
    document_title: str = ""
    kind: MemoryKind = MemoryKind.MANUAL
    page: int | None = Field(default=None, ge=1)
    section: str = ""
    text: str = Field(min_length=1)
    error_codes: tuple[str, ...] = ()
    machine_ids: tuple[str, ...] = ()
    occurred_at: UtcDatetime | None = None
    content_hash: str = ""


class Correction(_Frozen):
    """Reflective memory: what the field learnt; outranks what it amends.

    A correction never deletes its target: it closes the target's validity at
    ``valid_from`` (the target stays visible as superseded). Two corrections of the same
    target both survive, ordered by ``hlc``.
    """

    tenant_id: Ident
    # the id and the clock stamp order and identify the fact at every plant: both checked
    id: Ident = Field(default_factory=lambda: new_id("cor"))
    machine_id: Ident
    text: str = Field(min_length=1, max_length=10_000)
    author: str = Field(min_length=1, max_length=200)
    target_id: str | None = None
    method: CorrectionMethod = CorrectionMethod.TYPED
    valid_from: UtcDatetime = Field(default_factory=utcnow)
    valid_to: UtcDatetime | None = None
    origin_node: str = ""
    audio_sha256: str | None = None
    hlc: str = ""  # '' until the node's sync agent stamps it

    @field_validator("hlc")
    @classmethod
    def _hlc(cls, v: str) -> str:
        if v:
            from rae_sync.hlc import Hlc

            Hlc.parse(v)
        return v

    @model_validator(mode="after")
    def _window(self) -> Correction:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self


class Verdict(StrEnum):
    """A technician's verdict on a memory found for a problem."""

    FIXED = "fixed"  # "this fixed it (again)"
    NOT_RELEVANT = "not_relevant"  # "not relevant for this problem"


class Feedback(_Frozen):
    """A verdict on one memory (an incident, correction, manual section...): an append-only
    fact, idempotent on ``id``, synced and fanned out like a correction. ``query`` is what
    the technician was looking for (a "not relevant" lowers the memory for queries like it
    only); ``origin_node`` the plant's node that recorded it."""

    tenant_id: Ident
    id: str = Field(default_factory=lambda: new_id("fb"))
    memory_id: str = Field(min_length=1, max_length=200)
    verdict: Verdict
    query: str | None = Field(default=None, max_length=2000)
    machine_id: Ident | None = None
    author: str = Field(min_length=1, max_length=200)
    origin_node: str = ""
    created_at: UtcDatetime = Field(default_factory=utcnow)


class AuditEntry(_Frozen):
    """One line of the append-only audit log; ``hash`` chains to ``prev_hash``."""

    tenant_id: Ident
    seq: int = Field(ge=1)
    at: UtcDatetime
    actor: str
    action: str
    resource: str = ""
    memory_ids: tuple[str, ...] = ()
    prev_hash: str
    hash: str

    @staticmethod
    def compute_hash(
        prev_hash: str,
        seq: int,
        at: datetime,
        tenant_id: str,
        actor: str,
        action: str,
        resource: str,
        memory_ids: tuple[str, ...] | list[str],
    ) -> str:
        """The chain link: sha256 over the previous hash and every field of the entry."""
        h = hashlib.sha256()
        for part in (prev_hash, str(seq), _aware(at).isoformat(), tenant_id, actor, action,
                     resource, ",".join(memory_ids)):
            h.update(part.encode("utf-8"))
            h.update(b"\x1f")
        return h.hexdigest()
