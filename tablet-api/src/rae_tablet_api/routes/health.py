"""``GET /api/v1/health``: 200 once the node can serve (no token needed)."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.datastructures import State

from rae_edge.node import EdgeNode
from rae_edge.store.migrations import SCHEMA_VERSION
from rae_tablet_api.routes.ask import asker_of


@get("/api/v1/health", sync_to_thread=False, summary="Node health")
def health(node: EdgeNode, state: State) -> dict[str, Any]:
    return {"status": "ok", "tenant": node.tenant_id, "node": node.settings.node.node_id,
            "schema_version": SCHEMA_VERSION,
            "alarms": node.alarms.health(detail=False), "llm": asker_of(state).health()}


ROUTES = [health]
