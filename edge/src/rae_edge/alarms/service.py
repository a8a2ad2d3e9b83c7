"""``node.alarms``: the alarm sources of the node's settings, started and stopped with the
app, and their health.

:meth:`AlarmService.check` validates the mapping against the node's data (every machine
exists) with errors that name the key; :meth:`start` calls it, so a wrong mapping stops
the node at start rather than dropping alarms later.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rae_edge.alarm_settings import AlarmsSettings
from rae_edge.alarms.events import AlarmEvent
from rae_edge.alarms.inbox import Inbox
from rae_edge.alarms.processor import AlarmProcessor
from rae_edge.alarms.sources import AlarmSource, SourceContext
from rae_edge.alarms.store import AlarmState, AlarmStore
from rae_edge.alarms.writer import AlarmDeps
from rae_edge.errors import InvalidInputError

if TYPE_CHECKING:
    from rae_edge.alarms.sim_plc import SimulatedPlc

log = logging.getLogger(__name__)


class AlarmConfigError(InvalidInputError):
    """The ``alarms`` section names something the node does not have."""

    code = "invalid_alarm_config"


class AlarmService:
    def __init__(self, deps: AlarmDeps, settings: AlarmsSettings) -> None:
        self.deps = deps
        self.settings = settings
        self.inbox = Inbox(settings.queue_size)
        self.sources: list[AlarmSource] = []
        self._store: AlarmStore | None = None
        self.processor: AlarmProcessor | None = None
        self.plc: SimulatedPlc | None = None
        self.started = False

    @property
    def enabled(self) -> bool:
        return bool(self.settings.sources) or self.settings.simulated_plc is not None

    def check(self) -> None:
        """Raises :class:`AlarmConfigError` naming the first key that maps to a machine
        this node does not know."""
        known = {m.id for m in self.deps.duck.list_machines(self.deps.tenant_id)}
        for i, src in enumerate(self.settings.sources):
            lists: dict[str, list[Any]] = {"tags": getattr(src, "tags", []),
                                           "events": getattr(src, "events", []),
                                           "metrics": getattr(src, "metrics", [])}
            for field, mappings in lists.items():
                for j, m in enumerate(mappings):
                    if m.machine_id not in known:
                        raise AlarmConfigError(
                            f"alarms.sources.{i}.{field}.{j}.machine_id: unknown machine "
                            f"{m.machine_id!r} (source {src.name!r}; known: "
                            f"{', '.join(sorted(known)) or 'none'})")

    def start(self) -> None:
        """Checks the mapping, then starts the writer and every source (each retries on
        its own while its server is down)."""
        if self.started or not self.enabled:
            return
        if self.settings.simulated_plc is not None:
            from rae_edge.alarms.sim_plc import SimulatedPlc

            self.plc = SimulatedPlc(self.settings.simulated_plc,
                                    self.deps.data_dir / "alarms" / "sim-plc")
            try:
                self.plc.start()
            except Exception:  # a demo aid: its source shows 'down' in /health instead
                log.exception("alarms: the simulated PLC did not start")
        self.check()
        self._store = AlarmStore(self.deps.duck)
        self.processor = AlarmProcessor(self.deps, self._store, self.inbox,
                                        self.settings.chatter_window_s)
        self.processor.start()
        ctx = SourceContext(emit=self._emit, reject=self._reject,
                            retry_min_s=self.settings.retry_min_s,
                            retry_max_s=self.settings.retry_max_s,
                            data_dir=self.deps.data_dir)
        for src in self.settings.sources:
            plugin = AlarmSource.registry[src.type](src, ctx)
            self.sources.append(plugin)
            plugin.start()
        self.started = True
        log.info("alarms: %d source(s) started", len(self.sources))

    def stop(self) -> None:
        for s in self.sources:
            try:
                s.stop()
            except Exception:
                log.exception("alarms: stopping source %s failed", s.name)
        if self.processor is not None:
            self.processor.stop()
        if self.plc is not None:
            self.plc.stop()
        self.sources.clear()
        self.started = False

    def _emit(self, ev: AlarmEvent) -> None:
        self.inbox.put(ev)

    def _reject(self, source: str, reason: str, where: str | None, raw: bytes | None) -> None:
        if self._store is not None:
            self._store.reject(source, reason, where, raw)

    # -- reading -------------------------------------------------------------------------
    def states(self) -> list[AlarmState]:
        if self.processor is None:
            return []
        return sorted(self.processor.states.values(), key=lambda s: s.raised_at, reverse=True)

    def rejects(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest payloads set aside, with their reasons."""
        return self._store.rejects(limit) if self._store is not None else []

    def health(self, detail: bool = True) -> dict[str, Any]:
        """Each source's state, the queue, what was coalesced; ``detail=False`` (for the
        token-less ``/health``) leaves out the sources' error texts."""
        if not self.enabled:
            return {"enabled": False}
        sources = [s.health() for s in self.sources]
        if not detail:
            for h in sources:
                h.pop("last_error", None)
        p = self.processor
        c = p.counters if p is not None else None
        return {
            "enabled": True, "started": self.started,
            "sources": sources,
            "queue": {"depth": self.inbox.depth(), "size": self.inbox.size,
                      "received": self.inbox.received, "coalesced": self.inbox.coalesced,
                      "waited_for_room": self.inbox.waited, "dropped": 0},
            "incidents": c.incidents if c else 0, "pushes": c.pushes if c else 0,
            "clears": c.clears if c else 0, "chatter_counted": c.chatter if c else 0,
            "replays_ignored": c.replays if c else 0, "errors": c.errors if c else 0,
            "active": sum(1 for s in self.states() if s.active),
        }
