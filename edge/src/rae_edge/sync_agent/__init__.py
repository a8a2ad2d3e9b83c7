"""The edge node's sync with central over MQTT.

Modules:
- ``agent``: :class:`SyncAgent` (outbox → signed envelopes → central, acks, replays,
  corrections from other plants applied and pushed) with :class:`SyncOptions` and
  :class:`SyncStats`;
- ``down_apply``: :class:`DownApplier`, what central sends down applied in batches off the
  MQTT thread (one write per batch), acked up only once applied;
- ``index_later``: :class:`IndexLater`, corrections from other plants made searchable in
  the background (a start-up sweep covers a crash);
- ``batches``: :class:`BatchThread`, the background worker both are (its thread, queue,
  start and stop) and :func:`take_more`, the batch it takes from its queue;
- ``ledger``: :class:`SyncLedger`, the agent's durable state in DuckDB (seq, HLC, sealed
  envelopes until acked, unsendable rows, applied down messages);
- ``codec``: outbox rows → wire messages;
- ``enrollment``: the node's tenant, site, node and broker URL from its identity file
  (:func:`settings_from_identity`, :class:`EnrollmentError`).
"""

from rae_edge.sync_agent.agent import SyncAgent, SyncOptions, SyncStats
from rae_edge.sync_agent.enrollment import EnrollmentError, settings_from_identity
from rae_edge.sync_agent.ledger import SyncLedger

__all__ = ["EnrollmentError", "SyncAgent", "SyncLedger", "SyncOptions", "SyncStats",
           "settings_from_identity"]
