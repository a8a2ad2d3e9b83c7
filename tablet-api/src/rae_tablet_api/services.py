"""What a route handler may ask for by parameter name (Litestar ``Provide``), so each
handler names the narrow service it uses instead of reaching through the node:

- ``principal``: the caller (:class:`~rae_edge.tokens.Principal`; the guard checked it);
- ``memory``: :class:`~rae_edge.memory.MemoryService`; ``jobs``: document ingest jobs;
- ``voice``: :class:`~rae_edge.voice.VoiceService`; ``push``: :class:`~rae_edge.push.PushBus`;
- ``drift``: :class:`~rae_edge.drift.DriftMonitor`;
- ``audit``: the app's :class:`~rae_edge.audit.AuditLog` (the one the middleware writes);
- ``settings``: the node's :class:`~rae_edge.config.EdgeSettings`;
- ``duck``: the relational store (tokens, machines, the audit chain);
- ``node``: the whole node; only the backup takes it (a snapshot is of everything).

:func:`dependencies` is registered once on the app by
:func:`rae_tablet_api.app.create_app`; a new service is one provider here.
"""

from __future__ import annotations

from typing import Any, cast

from litestar.datastructures import State
from litestar.di import Provide

# Imported at run time, not for type checking only: Litestar reads these annotations.
from rae_edge.audit import AuditLog
from rae_edge.config import EdgeSettings
from rae_edge.drift import DriftMonitor, monitor
from rae_edge.memory import MemoryService
from rae_edge.memory.jobs import DocumentJobs
from rae_edge.node import EdgeNode
from rae_edge.push import PushBus
from rae_edge.store.duck import DuckStore
from rae_edge.voice import VoiceService
from rae_tablet_api.auth import provide_principal


def node_of(state: State) -> EdgeNode:
    """The node the app was built for (``create_app`` keeps it in the app state)."""
    return cast("EdgeNode", state.node)


def _node(state: State) -> EdgeNode:
    return node_of(state)


def _memory(state: State) -> MemoryService:
    return node_of(state).memory


def _jobs(state: State) -> DocumentJobs:
    return node_of(state).memory.jobs


def _voice(state: State) -> VoiceService:
    return node_of(state).voice


def _push(state: State) -> PushBus:
    return node_of(state).push


def _drift(state: State) -> DriftMonitor:
    return monitor(node_of(state))


def _settings(state: State) -> EdgeSettings:
    return node_of(state).settings


def _audit(state: State) -> AuditLog:
    return cast("AuditLog", state.audit)


def _duck(state: State) -> DuckStore:
    return node_of(state).duck


def dependencies() -> dict[str, Any]:
    """The app-wide dependencies (a fresh dict: Litestar keeps what it is given)."""
    return {
        "principal": Provide(provide_principal),
        **{name: Provide(fn, sync_to_thread=False) for name, fn in (
            ("node", _node), ("memory", _memory), ("jobs", _jobs), ("voice", _voice),
            ("push", _push), ("drift", _drift), ("duck", _duck), ("settings", _settings),
            ("audit", _audit))},
    }
