"""The edge node's two stores.

- ``migrations``: numbered DuckDB schema steps and the current schema version;
- ``duck``: :class:`DuckStore`, machines, incidents, corrections, audit log, outbox, tokens;
- ``changes``: :class:`ChangeCounters`, what each committed write changed (cached briefings);
- ``outbox``: the only writer of outbox rows: typed ``rae_sync`` messages, validated
  inside the caller's transaction (:func:`~rae_edge.store.outbox.enqueue`);
- ``idempotency``: :class:`IdempotencyStore`, first answers kept per ``Idempotency-Key``;
- ``lance``: :class:`LanceStore`, searchable text + vectors with scalar and full-text indexes.
"""

from rae_edge.store.duck import DuckStore
from rae_edge.store.lance import LanceStore, sql_literal

__all__ = ["DuckStore", "LanceStore", "sql_literal"]
