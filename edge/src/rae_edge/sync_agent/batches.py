"""Batches from a work queue: what a background worker handles in one go.

- :func:`take_more`: the batch a worker takes from its queue;
- :class:`BatchThread`: the worker itself, a daemon thread with its queue, started and
  stopped (the down applier and the background indexer are ones).
"""

from __future__ import annotations

import queue
import threading
from typing import Generic, TypeVar

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


class BatchThread(Generic[T]):
    """One daemon thread named ``name`` that hands what a subclass queues (``_queue``) to
    :meth:`handle` in batches of at most ``batch`` items, until :meth:`stop`, which ends it
    after the batch in hand. Subclasses say what a batch is for, and may add a step before
    the first batch (:meth:`before_first`) and a wait once an item came (:meth:`hold`:
    more gathers meanwhile)."""

    def __init__(self, name: str, batch: int) -> None:
        self.batch = batch
        self._name = name
        self._queue: queue.Queue[T | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stops after the batch in hand (what is still queued is left)."""
        self._stop.set()
        self._queue.put(None)  # wakes the thread from its wait
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def waiting(self) -> int:
        """Items queued and not yet taken."""
        return self._queue.qsize()

    def before_first(self) -> None:
        """On the thread, before it takes the first batch (nothing here)."""

    def hold(self) -> None:
        """On the thread, once an item came and before the batch is taken (nothing here)."""

    def handle(self, items: list[T]) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        self.before_first()
        while not self._stop.is_set():
            first = self._queue.get()
            if first is None:
                continue
            self.hold()
            self.handle(take_more(self._queue, first, self.batch))
