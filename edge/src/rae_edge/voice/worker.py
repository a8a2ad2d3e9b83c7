"""The transcription worker: one background thread fed by a bounded queue.

The API never waits on it: :meth:`TranscriptionWorker.submit` only tries to put the note
in the queue. A note that does not fit stays ``queued`` in DuckDB, which is the real queue:
the thread sweeps DuckDB whenever its queue runs dry, and at start (notes accepted before a
crash are transcribed after the restart).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from rae_edge.voice.notes import NoteTable

log = logging.getLogger(__name__)

SWEEP_S = 2.0  # idle time between two looks at DuckDB for notes that did not fit the queue


class TranscriptionWorker:
    """Runs ``process(tenant_id, note_id)`` for queued notes, one at a time."""

    def __init__(self, notes: NoteTable, process: Callable[[str, str], None],
                 queue_size: int) -> None:
        self.notes = notes
        self.process = process
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue(maxsize=queue_size)
        self._in_queue: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.idle = threading.Event()  # set while nothing is queued or running

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rae-voice-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stops after the note in hand (a note cut short is queued again at next start)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def submit(self, tenant_id: str, note_id: str) -> bool:
        """Queues a note without ever blocking; False when the queue is full (the note
        stays queued in DuckDB and a later sweep picks it up)."""
        key = (tenant_id, note_id)
        with self._lock:
            if key in self._in_queue:
                return True
            try:
                self._queue.put_nowait(key)
            except queue.Full:
                return False
            self._in_queue.add(key)
            self.idle.clear()
        return True

    def _sweep(self) -> int:
        """Moves queued notes from DuckDB into the queue while there is room."""
        with self._lock:
            room = self._queue.maxsize - self._queue.qsize()
            exclude = set(self._in_queue)
        if room <= 0:
            return 0
        added = 0
        for tenant_id, note_id in self.notes.pending(room, exclude):
            if not self.submit(tenant_id, note_id):
                break
            added += 1
        return added

    def _next(self) -> tuple[str, str] | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            pass
        if self._sweep():
            return self._next()
        self.idle.set()
        try:
            return self._queue.get(timeout=SWEEP_S)
        except queue.Empty:
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                key = self._next()
            except Exception:  # DuckDB closed under us, or a transient fault: retry later
                log.exception("voice worker: could not read the queue")
                self._stop.wait(SWEEP_S)
                continue
            if key is None:
                continue
            self.idle.clear()
            try:
                self.process(*key)
            except Exception:
                log.exception("voice worker: note %s failed", key[1])
            finally:
                with self._lock:
                    self._in_queue.discard(key)
