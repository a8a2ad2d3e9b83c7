"""The bounded, coalescing queue between the sources and the alarm writer.

It holds at most ``size`` distinct alarms (source, key). An event for an alarm already
waiting is merged into it (counted as coalesced) rather than queued: a chattering bit
or a flood of repeats costs one slot. Only a new distinct alarm may wait for room, and
it waits in the source's own thread, never in the API's: nothing is dropped.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from rae_edge.alarms.events import AlarmEvent


@dataclass
class Episode:
    """Consecutive events of one alarm with one code: raised ``raises`` times (each after
    a clear), ending active or cleared."""

    first: AlarmEvent
    last: AlarmEvent
    raises: int
    cleared_at: datetime | None = None

    @property
    def code(self) -> str | None:
        return self.first.code if self.first.active else None

    @property
    def active(self) -> bool:
        return self.last.active


@dataclass
class Pending:
    episodes: list[Episode] = field(default_factory=list)

    def add(self, ev: AlarmEvent) -> bool:
        """Merges ``ev``; returns True when it was coalesced into a waiting episode."""
        ep = self.episodes[-1] if self.episodes else None
        if ep is not None:
            if not ev.active and (ev.code is None or ev.code == ep.code or ep.code is None):
                ep.last, ep.cleared_at = ev, ev.occurred_at if ep.last.active else ep.cleared_at
                return True
            if ev.active and ev.code == ep.code:
                if not ep.last.active:
                    ep.raises += 1
                ep.last = ev
                return True
        self.episodes.append(Episode(ev, ev, 1 if ev.active else 0,
                                     None if ev.active else ev.occurred_at))
        return False


class Inbox:
    """Thread-safe; ``put`` from any source thread, ``take`` from the writer."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str], Pending] = OrderedDict()
        self._cond = threading.Condition()
        self._closed = False
        self.received = 0
        self.coalesced = 0
        self.waited = 0  # puts that had to wait for room (a distinct alarm: never dropped)

    def put(self, ev: AlarmEvent) -> None:
        key = (ev.source, ev.key)
        with self._cond:
            self.received += 1
            pending = self._items.get(key)
            if pending is None:
                if len(self._items) >= self.size:
                    self.waited += 1
                    while len(self._items) >= self.size and not self._closed:
                        self._cond.wait(0.5)
                pending = self._items.setdefault(key, Pending())
            if pending.add(ev):
                self.coalesced += 1
            self._cond.notify_all()

    def take(self, timeout: float) -> list[tuple[tuple[str, str], Pending]]:
        """Everything waiting (oldest first), after waiting up to ``timeout`` for any."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)
            items = list(self._items.items())
            self._items.clear()
            self._cond.notify_all()
            return items

    def depth(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
