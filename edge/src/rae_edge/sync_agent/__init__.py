"""The edge node's sync with central over MQTT.

Modules:
- ``agent``: :class:`SyncAgent` (outbox → signed envelopes → central, acks, replays,
  corrections from other plants applied and pushed) with :class:`SyncOptions` and
  :class:`SyncStats`;
- ``ledger``: :class:`SyncLedger`, the agent's durable state in DuckDB (seq, HLC, sealed
  envelopes until acked, unsendable rows, applied down messages);
- ``codec``: outbox rows → wire messages.
"""

from rae_edge.sync_agent.agent import SyncAgent, SyncOptions, SyncStats
from rae_edge.sync_agent.ledger import SyncLedger

__all__ = ["SyncAgent", "SyncLedger", "SyncOptions", "SyncStats"]
