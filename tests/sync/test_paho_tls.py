"""PahoTransport with the TLS material of a node identity, against the real mosquitto
with central's CA and ACL: the node publishes under its own topics; the broker refuses
anything else in the PUBACK, and the transport raises instead of calling it sent."""

from __future__ import annotations

import threading

import pytest

from rae_central.pki import IssuedCert
from rae_sync.errors import TransportError
from rae_sync.identity import TlsMaterial
from rae_sync.topics import down_topic, node_down_filter, up_topic
from rae_sync.transport import InboundMessage, PahoTransport
from tests.fixtures.mosquitto_tls import TlsBroker


def _tls(cert: IssuedCert) -> TlsMaterial:
    return TlsMaterial(ca_pem=cert.ca.read_text(), cert_pem=cert.cert.read_text(),
                       key_pem=cert.key.read_text())


def test_node_publishes_its_own_topics_and_is_refused_others(tls_broker: TlsBroker) -> None:
    node = ("acme", "plant-1", "node-1")
    t = PahoTransport.from_url(f"mqtts://localhost:{tls_broker.port}", "node-1",
                               tls=_tls(tls_broker.nodes[node]))
    central = PahoTransport("localhost", tls_broker.port, "central",
                            tls=_tls(tls_broker.central))
    got: list[InboundMessage] = []
    arrived = threading.Event()

    def on_down(m: InboundMessage) -> None:
        got.append(m)
        arrived.set()

    t.subscribe(node_down_filter(*node), on_down)
    try:
        t.connect(timeout=15)
        central.connect(timeout=15)
        t.publish(up_topic(*node, "correction"), b"mine")
        with pytest.raises(TransportError, match="refused"):
            t.publish(up_topic("acme", "plant-1", "node-2", "correction"), b"not mine")
        central.publish(down_topic(*node, "ack"), b"ack")
        assert arrived.wait(10)
        assert got[0].payload == b"ack"
    finally:
        t.close()
        central.close()
