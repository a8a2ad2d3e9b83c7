"""``POST /api/v1/feedback`` (technician): "this fixed it" / "not relevant" on a memory
found in a briefing or a search. Stored as a fact with who and when (and its sync outbox
row, in one transaction) before the answer; the answer names the memory and its
confirmations so far, so the audit log records which memory the verdict was given on."""

from __future__ import annotations

from datetime import datetime

from litestar import post
from pydantic import BaseModel, ConfigDict, Field

from rae_edge.audit import actor_of
from rae_edge.memory import MemoryService
from rae_edge.tokens import Principal
from rae_sync.domain import Ident, Verdict
from rae_tablet_api import guards


class FeedbackIn(BaseModel):
    """A verdict on one memory; ``query`` is what was searched for (a "not relevant"
    lowers the memory for queries like it only)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    memory_id: str = Field(min_length=1, max_length=200)
    verdict: Verdict
    query: str | None = Field(default=None, max_length=2000)
    machine_id: Ident | None = None


class MemoryTally(BaseModel):
    id: str
    confirmations: int = Field(description="'this fixed it' verdicts on it, every plant")
    plants: int = Field(description="plants (sites) those verdicts came from")


class FeedbackOut(BaseModel):
    """The stored verdict."""

    id: str
    verdict: Verdict
    query: str | None
    machine_id: str | None
    author: str
    origin_node: str
    created_at: datetime
    memory: MemoryTally


@post("/api/v1/feedback", status_code=201, sync_to_thread=True, tags=["feedback"],
      summary="Say a memory fixed it, or was not relevant", guards=guards.TECHNICIAN)
def add_feedback(data: FeedbackIn, principal: Principal, memory: MemoryService) -> FeedbackOut:
    fb = memory.feedback.record(principal.tenant_id, memory_id=data.memory_id,
                                     verdict=data.verdict, query=data.query,
                                     machine_id=data.machine_id, author=actor_of(principal))
    tally = memory.feedback.for_memories(principal.tenant_id, [fb.memory_id])
    mf = tally.get(fb.memory_id)
    return FeedbackOut(
        id=fb.id, verdict=fb.verdict, query=fb.query, machine_id=fb.machine_id,
        author=fb.author, origin_node=fb.origin_node, created_at=fb.created_at,
        memory=MemoryTally(id=fb.memory_id, confirmations=mf.confirmations if mf else 0,
                           plants=len(mf.plants) if mf else 0))


ROUTES = [add_feedback]
