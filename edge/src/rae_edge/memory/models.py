"""What the memory service answers: typed models the tablet API returns as they are
(and documents in its OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rae_sync.domain import Correction, Machine


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MachineOut(_Out):
    id: str
    name: str
    qr_code: str
    site: str = ""
    line: str | None = None

    @classmethod
    def of(cls, m: Machine) -> MachineOut:
        return cls(id=m.id, name=m.name, qr_code=m.qr_code, site=m.site, line=m.line)


class CorrectionOut(_Out):
    """A reflective memory: what the field learnt, and what it amends."""

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
    def of(cls, c: Correction) -> CorrectionOut:
        # From a validated Correction: nothing to check again.
        return cls.model_construct(id=c.id, machine_id=c.machine_id, text=c.text,
                                   author=c.author, target_id=c.target_id,
                                   method=c.method.value, valid_from=c.valid_from,
                                   valid_to=c.valid_to, origin_node=c.origin_node)


class BriefIncident(_Out):
    """A past incident of the machine with what fixed it. When corrections amend it, the
    latest correction's text is ``current_fix`` (the correction wins) and ``action``
    stays visible, marked superseded."""

    id: str
    machine_id: str
    occurred_at: datetime
    error_code: str | None = None
    symptom: str
    action: str | None = None
    source: str = ""
    corrections: list[CorrectionOut] = Field(default_factory=list)
    superseded: bool = False
    superseded_by: list[str] = Field(default_factory=list)
    current_fix: str | None = None
    relevance: str = Field(default="recent", description="'error_code' when it matches the "
                           "current error code, 'recurring' when part of a recurring problem")
    confirmations: int = Field(default=0, description="'this fixed it' verdicts on it or "
                               "its corrections, from every plant")
    confirmed_plants: int = Field(default=0, description="plants those verdicts came from")


class RecurringProblem(_Out):
    """The same error code (or the same symptom) more than once on this machine."""

    label: str
    error_code: str | None = None
    symptom: str | None = None
    count: int
    first_at: datetime
    last_at: datetime
    incident_ids: list[str]


class ManualSection(_Out):
    id: str
    document_id: str | None = None
    document_title: str | None = None
    section: str | None = None
    page: int | None = None
    error_codes: list[str] = Field(default_factory=list)
    text: str
    superseded_by: list[str] = Field(default_factory=list)


class Briefing(_Out):
    """What a technician sees on scanning a machine."""

    machine: MachineOut
    as_of: datetime | None = None
    error_code: str | None = None
    summary: str
    incidents: list[BriefIncident]
    recurring: list[RecurringProblem]
    manual_sections: list[ManualSection]
    corrections: list[CorrectionOut] = Field(
        default_factory=list, description="every correction on this machine (in force at "
        "as_of), including general notes that amend no incident")
    drift_alerts: list[dict[str, Any]] = Field(default_factory=list)
    incident_count: int = Field(description="incidents of this machine up to as_of")


class SearchHit(_Out):
    id: str
    kind: str
    text: str
    machine_id: str | None = None
    score: float
    occurred_at: datetime | None = None
    source: str | None = None
    target_id: str | None = None
    document_id: str | None = None
    section: str | None = None
    page: int | None = None
    error_codes: list[str] = Field(default_factory=list)
    superseded_by: list[str] | None = None
    ranks: dict[str, int] = Field(default_factory=dict,
                                  description="rank in each retriever (vector, text)")


class SearchResult(_Out):
    query: str
    normalized_query: str
    hits: list[SearchHit]


class ContextItem(_Out):
    id: str
    kind: str
    source: str | None = None
    machine_id: str | None = None
    occurred_at: datetime | None = None
    text: str
    corrects: str | None = Field(default=None, description="the memory this correction amends")
    superseded_by: list[str] | None = None
    tokens: int


class ContextPack(_Out):
    """The most relevant memories for a question, under a token budget, ready for any LLM.

    ``text`` is the pack as one prompt block; ``items`` the same memories as records.
    ``tokens_all_matches`` is what sending every matching memory would cost (counted with
    the same tokenizer), so ``tokens_saved`` is what packing saves.
    """

    query: str
    machine_id: str | None = None
    budget_tokens: int
    tokens_used: int
    tokens_all_matches: int
    tokens_saved: int
    matches: int
    stopped: Literal["relevance", "budget", "matches"] = Field(
        default="budget", description="why the pack ended: relevance (the rest scored too "
        "far below the best match; a larger budget adds nothing), budget (more relevant "
        "memories did not fit) or matches (every match is in)")
    items: list[ContextItem]
    text: str
