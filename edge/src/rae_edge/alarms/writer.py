"""The one place alarm incidents enter the node's memory.

A single function, so routing it through the node's single writer later is one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rae_sync.domain import Incident

if TYPE_CHECKING:
    from rae_edge.node import EdgeNode


def store_alarm_incidents(node: EdgeNode, tenant_id: str,
                          incidents: Sequence[Incident]) -> list[Incident]:
    """Stores incidents (idempotent on id: one already stored is not stored again), with
    their sync outbox rows, indexed like any incident; returns the new ones."""
    if not incidents:
        return []
    _, new = node.memory.add_incidents(tenant_id, incidents)
    return new
