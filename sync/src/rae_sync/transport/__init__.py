"""MQTT transports.

Modules:
- ``base``: the :class:`Transport` interface (publish waits for PUBACK, subscribe with
  ``+``/``#``/``$share``, connection listeners), :class:`InboundMessage`, topic matching;
- ``paho``: :class:`PahoTransport`, MQTT 5 over paho-mqtt 2.x with a persistent session;
- ``memory``: :class:`MemoryBroker` and :class:`MemoryTransport`, an in-process broker with
  the same behaviour, for tests and single-process setups.

Both implementations pass the same contract suite (tests/sync/test_transport_contract.py).
"""

from rae_sync.transport.base import InboundMessage, PublishHandle, Transport, topic_matches
from rae_sync.transport.memory import MemoryBroker, MemoryTransport
from rae_sync.transport.paho import PahoTransport, parse_mqtt_url

__all__ = [
    "InboundMessage",
    "MemoryBroker",
    "MemoryTransport",
    "PahoTransport",
    "PublishHandle",
    "Transport",
    "parse_mqtt_url",
    "topic_matches",
]
