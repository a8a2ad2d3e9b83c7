"""What every alarm source is: a plugin keyed by ``type`` (the config's discriminator),
started and stopped by the service, emitting :class:`AlarmEvent` into the inbox and
setting aside what it cannot read. Each runs in its own thread, so a slow or flooding
source never holds the API's event loop."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from rae_edge.alarms.events import AlarmEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceContext:
    """What the service hands a source."""

    emit: Callable[[AlarmEvent], None]
    reject: Callable[[str, str, str | None, bytes | None], None]  # source, reason, where, raw
    retry_min_s: float
    retry_max_s: float
    data_dir: Path


class AlarmSource(ABC):
    """Base of the source plugins; a subclass with ``source_type = "x"`` serves ``type: x``."""

    source_type: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[AlarmSource]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.source_type:
            AlarmSource.registry[cls.source_type] = cls

    def __init__(self, settings: Any, ctx: SourceContext) -> None:
        self.settings = settings
        self.name: str = settings.name
        self.ctx = ctx
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state = "stopped"
        self._error: str | None = None
        self._since: datetime | None = None
        self._attempts = 0
        self._connects = 0
        self._events = 0
        self._rejected = 0
        self._retry_in: float | None = None

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    # -- for the subclasses --------------------------------------------------------------
    def emit(self, ev: AlarmEvent) -> None:
        with self._lock:
            self._events += 1
        self.ctx.emit(ev)

    def reject(self, reason: str, where: str | None = None, raw: bytes | None = None) -> None:
        """Sets a message aside with its reason; the source goes on."""
        with self._lock:
            self._rejected += 1
            self._error = reason
        log.warning("alarm source %s: set aside%s: %s", self.name,
                    f" ({where})" if where else "", reason)
        try:
            self.ctx.reject(self.name, reason, where, raw)
        except Exception:  # the store is closing: the log line above is the record
            log.exception("alarm source %s: could not store the rejected payload", self.name)

    def set_state(self, state: str, error: str | None = None,
                  retry_in: float | None = None) -> None:
        with self._lock:
            if state == "connected" and self._state != "connected":
                self._connects += 1
                self._since = datetime.now(UTC)
                self._error = None
            if state == "connecting":
                self._attempts += 1
            if error is not None:
                self._error = error
            self._state = state
            self._retry_in = retry_in

    def backoff(self, delay: float) -> float:
        """Waits ``delay`` (or until stopped); returns the next, doubled, delay."""
        self._stop.wait(delay)
        return min(delay * 2, self.ctx.retry_max_s)

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {"name": self.name, "type": self.source_type, "state": self._state,
                    "connected_since": self._since.isoformat() if self._since else None,
                    "connect_attempts": self._attempts, "connects": self._connects,
                    "events": self._events, "rejected": self._rejected,
                    "last_error": self._error, "retry_in_s": self._retry_in}

    def wait_state(self, state: str, timeout: float) -> bool:
        """Polls until the source is in ``state`` (tests, start-up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._state == state:
                return True
            time.sleep(0.02)
        return self._state == state
