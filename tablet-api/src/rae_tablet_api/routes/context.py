"""``GET /api/v1/context``: the most relevant memories for a question, packed under a token
budget for any LLM, with ids and sources, and the tokens saved against sending them all."""

from __future__ import annotations

from datetime import datetime

from litestar import get
from litestar.datastructures import State

from rae_edge.memory.models import ContextPack
from rae_edge.node import EdgeNode
from rae_edge.tokens import Principal
from rae_sync.domain import Role
from rae_tablet_api.auth import require
from rae_tablet_api.schemas import utc_or_none


@get("/api/v1/context", sync_to_thread=True, tags=["search"], summary="Context pack for an LLM")
def context(q: str, principal: Principal, state: State, machine_id: str | None = None,
            budget_tokens: int = 4000, as_of: datetime | None = None) -> ContextPack:
    """Tokens are counted with the embedder's tokenizer (close to, not equal to, any
    particular LLM's count). Corrections stand before what they correct."""
    require(principal, Role.TECHNICIAN)
    node: EdgeNode = state.node
    return node.memory.context(principal.tenant_id, q, machine_id=machine_id or None,
                               budget_tokens=budget_tokens, as_of=utc_or_none(as_of))


ROUTES = [context]
