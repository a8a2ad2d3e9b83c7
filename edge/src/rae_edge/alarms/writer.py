"""The one place alarm incidents enter the node's memory, and what the alarm parts need of
the node (:class:`AlarmDeps`, passed in by the node's composition root).

Alarm incidents go through the memory service (:meth:`add_incidents`: the node's one
writer, the similar-incident push), reached through the small :class:`AlarmMemory`
Protocol so this package imports neither the memory service nor the node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rae_sync.domain import Incident

if TYPE_CHECKING:  # types only: importing the memory package builds its whole service
    from rae_edge.memory.models import Briefing
    from rae_edge.store.duck import DuckStore


class AlarmMemory(Protocol):
    """What alarms need of the memory service: store incidents, build a briefing."""

    def add_incidents(self, tenant_id: str, incidents: Sequence[Incident],
                      ) -> tuple[list[str], list[Incident]]: ...

    def briefing(self, tenant_id: str, code: str, *, as_of: datetime | None = None,
                 error_code: str | None = None, publish: bool = True) -> Briefing: ...


class AlarmPushes(Protocol):
    """What alarms need of the push bus (their ``alarm`` messages)."""

    def publish(self, tenant_id: str, machine_id: str, type: str,
                payload: dict[str, Any]) -> int: ...

    def publish_soon(self, tenant_id: str, machine_id: str, type: str,
                     payload: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class AlarmDeps:
    """The node's parts the alarm service and processor use."""

    tenant_id: str
    duck: DuckStore
    data_dir: Path
    push: AlarmPushes
    memory: Callable[[], AlarmMemory]  # a callable: the memory service is built on use


def store_alarm_incidents(memory: AlarmMemory, tenant_id: str,
                          incidents: Sequence[Incident]) -> list[Incident]:
    """Stores incidents (idempotent on id: one already stored is not stored again), with
    their sync outbox rows, indexed like any incident; returns the new ones."""
    if not incidents:
        return []
    _, new = memory.add_incidents(tenant_id, incidents)
    return new
