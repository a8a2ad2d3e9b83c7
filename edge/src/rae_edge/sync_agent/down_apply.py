"""``DownApplier``: applies what central sends down in batches, off the MQTT thread.

The MQTT handler only verifies a down message and queues it (:meth:`DownApplier.put`); the
applier's thread drains the queue, up to ``batch`` messages at a time, and applies the
corrections among them through ONE :meth:`~rae_edge.write.writer.Writer.write`: one
DuckDB transaction for the rows (stored in bulk, idempotent on the correction id), one
push transaction, one drift refresh. A node that was away for a month catches up in a few
dozen such batches instead of ten thousand single writes. Indexing for search (embedding,
the slow part) is handed to :class:`~rae_edge.sync_agent.index_later.IndexLater`, off this
path, as central's vector indexer is off its ack path.

Only after the batch has run every step are its message ids marked applied (one
transaction) and handed to ``on_applied``, which acks them up: central keeps each until
that ack, so a crash anywhere before it makes central send them again, and the applied
ledger (checked per batch, and within it) plus the idempotent store apply each once.
A message queued here and lost in a crash was never acked: it comes again on the resume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb

from rae_edge.push_kinds import CorrectionPush, CorrectionView, PushBody
from rae_edge.store.changes import Touch
from rae_edge.store.outbox import OutboxMessage
from rae_edge.sync_agent.batches import BatchThread
from rae_edge.sync_agent.index_later import IndexLater
from rae_edge.sync_agent.ledger import SyncLedger
from rae_edge.write.facts import CorrectionFacts
from rae_edge.write.writer import FactWriter, IndexPort
from rae_sync.domain import Correction, Feedback
from rae_sync.envelope import Envelope
from rae_sync.hlc import HybridClock
from rae_sync.messages import CorrectionMsg, FeedbackMsg, NodeRef

log = logging.getLogger("rae_edge.sync")

Applied = tuple[str, int]  # (message id, down seq): what is acked up
LARGE = 32  # a batch this large means a catch-up (see DownApplier.busy)
_COLS = ("tenant_id", "id", "machine_id", "text", "author", "target_id", "method",
         "valid_from", "valid_to", "origin_node", "audio_sha256", "hlc")
_TYPES = ("VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR",
          "TIMESTAMPTZ", "TIMESTAMPTZ", "VARCHAR", "VARCHAR", "VARCHAR")
_INSERT = (f"INSERT INTO corrections ({', '.join(_COLS)}) SELECT "
           + ", ".join(f"unnest(?::{t}[])" for t in _TYPES))


@dataclass(frozen=True)
class RemoteCorrections:
    """Corrections from other plants, many origins in one write: stored in bulk (one
    existence query, one insert), never queued again, pushed with each one's origin."""

    origins: Mapping[str, NodeRef]  # correction id -> the node that made it
    index_it: bool = True
    name: str = "correction"
    to_outbox: bool = False

    def ids(self, items: Sequence[Correction]) -> tuple[str, ...]:
        return tuple(c.id for c in items)

    def drifts(self, cur: duckdb.DuckDBPyConnection, stored: Sequence[Correction]) -> bool:
        return any(c.target_id for c in stored)  # as CorrectionFacts: a correction of something

    def tenants(self, items: Sequence[Correction]) -> list[str]:
        return sorted({c.tenant_id for c in items})

    def touches(self, stored: Sequence[Correction]) -> list[Touch]:
        return [(t, None) for t in self.tenants(stored)]

    def store(self, cur: duckdb.DuckDBPyConnection,
              items: Sequence[Correction]) -> list[Correction]:
        fresh: dict[tuple[str, str], Correction] = {}
        for c in items:  # the same fact under two message ids is stored once
            fresh.setdefault((c.tenant_id, c.id), c)
        if not fresh:
            return []
        keys = list(fresh)
        present = cur.execute(
            "SELECT c.tenant_id, c.id FROM corrections c JOIN (SELECT unnest(?::VARCHAR[]) "
            "AS t, unnest(?::VARCHAR[]) AS i) k ON c.tenant_id = k.t AND c.id = k.i",
            [[t for t, _ in keys], [i for _, i in keys]]).fetchall()
        for t, i in present:
            fresh.pop((str(t), str(i)), None)
        new = list(fresh.values())
        if new:
            cur.execute(_INSERT, [list(col) for col in zip(*(_row(c) for c in new),
                                                            strict=True)])
        return new

    def messages(self, stored: Sequence[Correction]) -> list[OutboxMessage]:
        return []

    def index(self, indexer: IndexPort, items: Sequence[Correction],
              stored: Sequence[Correction]) -> None:
        CorrectionFacts(index_it=self.index_it).index(indexer, items, stored)

    def promised(self, stored: Sequence[Correction]) -> list[tuple[str, PushBody]]:
        return [(c.tenant_id, CorrectionPush(machine_id=c.machine_id, text=c.text,
                                             target_id=c.target_id,
                                             correction=CorrectionView.of(c),
                                             origin=self.origins.get(c.id)))
                for c in stored]

    def pushes(self, stored: Sequence[Correction],
               promised: Sequence[tuple[str, PushBody]]) -> list[tuple[str, PushBody]]:
        return list(promised)  # complete as promised: nothing to look up


def _row(c: Correction) -> tuple[str | datetime | None, ...]:
    return (c.tenant_id, c.id, c.machine_id, c.text, c.author, c.target_id, c.method.value,
            c.valid_from, c.valid_to, c.origin_node, c.audio_sha256, c.hlc)


@dataclass(frozen=True)
class _Down:
    env: Envelope
    msg: CorrectionMsg | FeedbackMsg


class DownApplier(BatchThread[_Down]):
    """Queues verified down messages and applies them in batches on its own thread;
    :meth:`stop` leaves what is still queued, which was not acked and comes again from
    central."""

    def __init__(self, *, tenant_id: str, ledger: SyncLedger, writer: FactWriter,
                 feedback: Callable[[Feedback], object], clock: HybridClock,
                 on_applied: Callable[[list[Applied], int], None], batch: int = 256,
                 index: IndexLater | None = None) -> None:
        super().__init__("rae-sync-apply", batch)
        self.tenant_id = tenant_id
        self.ledger = ledger
        self.writer = writer
        self._feedback = feedback
        self.clock = clock
        self.on_applied = on_applied  # (acked items, how many corrections were new)
        self.index = index  # None: not indexed (an agent run without the model, tests)
        self._last_large = 0.0  # when the last large batch was applied

    def put(self, env: Envelope, msg: CorrectionMsg | FeedbackMsg) -> None:
        """From the MQTT handler: returns at once."""
        self._queue.put(_Down(env, msg))

    def busy(self, quiet_s: float = 2.0) -> bool:
        """Whether a catch-up is under way: down messages waiting, or a batch of at least
        :data:`LARGE` applied in the last ``quiet_s`` (live traffic comes a few at a time)."""
        return self.waiting > 0 or time.monotonic() - self._last_large < quiet_s

    def handle(self, items: list[_Down]) -> None:
        try:
            self.apply(items)
        except Exception:
            if len(items) == 1:  # not acked: central keeps it and sends it again
                log.exception("sync: applying a down message failed; central keeps it "
                              "and sends it again")
                return
            # one bad message must not hold back the others: one by one
            log.warning("sync: applying %d down messages at once failed; one by one",
                        len(items), exc_info=True)
            for item in items:
                try:
                    self.apply([item])
                except Exception:
                    log.exception("sync: applying down message %s failed; central "
                                  "keeps it and sends it again", item.env.message_id)

    def apply(self, items: Sequence[_Down]) -> None:
        """Applies a batch (in order; the corrections among them in one write), marks it
        applied, then acks it up."""
        done = self.ledger.applied_among([d.env.message_id for d in items])
        corrections: list[Correction] = []
        origins: dict[str, NodeRef] = {}
        marks: list[tuple[str, str]] = []
        stored = 0

        def flush() -> None:
            # The node's one write path, as for a typed or voiced correction: stored
            # (never queued again), pushed to the tablets watching its machine, drift;
            # marked applied only once all of that ran (a crash before re-applies,
            # idempotently). Indexed in the background (IndexLater, whose start-up sweep
            # covers a crash before it got there).
            nonlocal stored
            if corrections:
                new = self.writer.write(
                    RemoteCorrections(origins=dict(origins), index_it=False),
                    list(corrections), "remote")
                if self.index is not None:
                    self.index.put(new)
                stored += len(new)
                corrections.clear()
                origins.clear()

        for d in items:
            mid = d.env.message_id
            if mid in done:  # applied before (a redelivery): acked again only
                continue
            done.add(mid)  # a second copy within the batch too
            m = d.msg
            if isinstance(m, CorrectionMsg):
                c = m.correction
                if c.tenant_id != self.tenant_id:
                    log.warning("sync: dropped correction %s of tenant %s", c.id, c.tenant_id)
                    continue
                if c.hlc:
                    self.clock.update(c.hlc)
                corrections.append(c)
                if m.origin is not None:
                    origins.setdefault(c.id, m.origin)
            else:
                fb = m.feedback
                if fb.tenant_id != self.tenant_id:
                    log.warning("sync: dropped feedback %s of tenant %s", fb.id, fb.tenant_id)
                    continue
                flush()  # in the order they came: a verdict may follow what it judges
                self._feedback(fb)  # idempotent on its id; its own small write
            marks.append((mid, d.env.type.value))
        flush()
        self.ledger.mark_applied_many(marks)
        if len(items) >= LARGE:
            self._last_large = time.monotonic()
        self.on_applied([(d.env.message_id, d.env.seq) for d in items], stored)
