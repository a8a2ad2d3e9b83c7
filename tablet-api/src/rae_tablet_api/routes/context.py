"""``GET /api/v1/context``: the most relevant memories for a question, packed under a token
budget for any LLM, with ids and sources, and the tokens saved against sending them all."""

from __future__ import annotations

from datetime import datetime

from litestar import get

from rae_edge.memory import MemoryService
from rae_edge.memory.models import ContextPack
from rae_edge.tokens import Principal
from rae_tablet_api import guards
from rae_tablet_api.schemas import utc_or_none


@get("/api/v1/context", sync_to_thread=True, tags=["search"], guards=guards.TECHNICIAN,
     summary="Context pack for an LLM")
def context(q: str, principal: Principal, memory: MemoryService, machine_id: str | None = None,
            budget_tokens: int = 4000, as_of: datetime | None = None) -> ContextPack:
    """Tokens are counted with the embedder's tokenizer (close to, not equal to, any
    particular LLM's count). Corrections stand before what they correct."""
    return memory.context(principal.tenant_id, q, machine_id=machine_id or None,
                          budget_tokens=budget_tokens, as_of=utc_or_none(as_of))


ROUTES = [context]
