"""Hybrid logical clock: wall-clock milliseconds plus a logical counter.

A stamp is the string ``MMMMMMMMMMMMM-CCCCCC`` (13-digit zero-padded Unix ms, 6-digit
counter), so sorting stamps as strings sorts them in time. A clock never goes back: if the
wall clock is set back, the physical part stays at the largest value seen and the counter
grows; on receiving a stamp from elsewhere the clock moves past it. Persist ``last`` and
pass it back as ``start`` after a restart, so stamps also grow across restarts.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_STAMP_RE = re.compile(r"^(\d{13})-(\d{6})$")
_MAX_COUNTER = 999_999


@dataclass(frozen=True, order=True)
class Hlc:
    """One stamp: physical milliseconds and a logical counter."""

    ms: int
    counter: int = 0

    def __str__(self) -> str:
        return f"{self.ms:013d}-{self.counter:06d}"

    @classmethod
    def parse(cls, value: str) -> Hlc:
        m = _STAMP_RE.match(value)
        if not m:
            raise ValueError(f"invalid HLC stamp {value!r}: expected 13 digits '-' 6 digits")
        return cls(int(m.group(1)), int(m.group(2)))


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class HybridClock:
    """A thread-safe hybrid logical clock."""

    def __init__(self, start: str | Hlc | None = None,
                 wall_ms: Callable[[], int] = _wall_ms) -> None:
        self._wall = wall_ms
        self._lock = threading.Lock()
        self._last = Hlc.parse(start) if isinstance(start, str) else (start or Hlc(0, 0))

    @property
    def last(self) -> Hlc:
        """The latest stamp issued or seen."""
        return self._last

    def _advance(self, floor: Hlc) -> Hlc:
        pt = self._wall()
        if pt > floor.ms:
            nxt = Hlc(pt, 0)
        elif floor.counter < _MAX_COUNTER:
            nxt = Hlc(floor.ms, floor.counter + 1)
        else:  # a million stamps in one ms: borrow the next ms rather than overflow
            nxt = Hlc(floor.ms + 1, 0)
        self._last = nxt
        return nxt

    def now(self) -> Hlc:
        """A new stamp, greater than every stamp issued or seen before."""
        with self._lock:
            return self._advance(self._last)

    def update(self, remote: str | Hlc) -> Hlc:
        """Takes a stamp received from elsewhere; returns a new stamp greater than it and
        than every local one."""
        seen = Hlc.parse(remote) if isinstance(remote, str) else remote
        with self._lock:
            return self._advance(max(self._last, seen))
