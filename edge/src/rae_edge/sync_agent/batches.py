"""Batches from a work queue: what a background worker handles in one go."""

from __future__ import annotations

import queue
from typing import TypeVar

T = TypeVar("T")


def take_more(q: queue.Queue[T | None], first: T, limit: int) -> list[T]:
    """``first`` and whatever else is queued now, up to ``limit`` items in all, in order
    (``None``, a wake-up a worker gets on stop, is skipped): one write or one index pass
    for a burst instead of one each."""
    items = [first]
    while len(items) < limit:
        try:
            nxt = q.get_nowait()
        except queue.Empty:
            break
        if nxt is not None:
            items.append(nxt)
    return items
