"""A real Mosquitto with the generated TLS config and ACL: a node's certificate can publish
and subscribe under its own rae/v1/{tenant}/{site}/{node}/ topics only; central's workers
see everything; no certificate, or one from another CA, gets no connection at all."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from rae_central.pki import CertificateAuthority, acl_text, node_prefix
from tests.fixtures.mosquitto_tls import TlsBroker

NOT_AUTHORIZED = 135


class Probe:
    """A connected MQTT 5 client that records acks and messages."""

    def __init__(self, broker: TlsBroker, client: Any) -> None:
        self.c: mqtt.Client = client
        self.connected = threading.Event()
        self.connect_rc: Any = None
        self.acks: dict[int, Any] = {}
        self.subacks: dict[int, list[Any]] = {}
        self.messages: list[str] = []
        self._cv = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = lambda c, u, m: self._note(self.messages, m.topic)
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()
        assert self.connected.wait(10), "no CONNACK"
        assert not self.connect_rc.is_failure, self.connect_rc

    def _note(self, where: list[str], item: str) -> None:
        with self._cv:
            where.append(item)
            self._cv.notify_all()

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connect_rc = rc
        self.connected.set()

    def _on_publish(self, c: Any, u: Any, mid: int, rc: Any, props: Any) -> None:
        with self._cv:
            self.acks[mid] = rc
            self._cv.notify_all()

    def _on_subscribe(self, c: Any, u: Any, mid: int, rcs: list[Any], props: Any) -> None:
        with self._cv:
            self.subacks[mid] = rcs
            self._cv.notify_all()

    def publish(self, topic: str) -> int:
        info = self.c.publish(topic, b"payload", qos=1)
        with self._cv:
            assert self._cv.wait_for(lambda: info.mid in self.acks, 10), f"no PUBACK: {topic}"
            return int(self.acks[info.mid].value)

    def subscribe(self, topic: str) -> int:
        _, mid = self.c.subscribe(topic, qos=1)
        with self._cv:
            assert self._cv.wait_for(lambda: mid in self.subacks, 10), f"no SUBACK: {topic}"
            return int(self.subacks[mid][0].value)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_node_publishes_and_subscribes_only_under_its_own_topics(tls_broker: TlsBroker) -> None:
    central = Probe(tls_broker, tls_broker.client_for(tls_broker.central, "central-w1"))
    node = Probe(tls_broker, tls_broker.client_for(
        tls_broker.nodes[("acme", "plant-1", "node-1")], "acme-node-1"))
    try:
        assert central.subscribe("rae/#") == 1  # granted QoS 1
        own = node_prefix("acme", "plant-1", "node-1")
        assert node.publish(f"{own}/up/correction") == 0
        assert node.subscribe(f"{own}/down/#") == 1

        foreign = [
            f"{node_prefix('acme', 'plant-1', 'node-2')}/up/correction",  # sibling node
            f"{node_prefix('globex', 'plant-9', 'node-1')}/up/correction",  # other tenant
            "rae/v1/acme/plant-1/node-1x/up/correction",  # a name that merely starts alike
            "rae/v1/acme/plant-1/up",
            "rae/v1/acme/_fanout",
            "elsewhere/topic",
        ]
        refused_pub = [t for t in foreign if node.publish(t) == NOT_AUTHORIZED]
        refused_sub = [t for t in ["rae/#", "rae/v1/acme/#", "rae/v1/globex/#", "#",
                                   f"{node_prefix('acme', 'plant-1', 'node-2')}/#"]
                       if node.subscribe(t) == NOT_AUTHORIZED]

        # Central's view: only the node's own message arrived.
        for t in ("rae/v1/acme/plant-1/node-2/down/x", "rae/v1/globex/plant-9/node-1/down/x",
                  f"{own}/down/correction"):
            assert central.publish(t) == 0
        time.sleep(1.0)
        assert central.messages.count(f"{own}/up/correction") == 1
        assert not [m for m in central.messages if m in foreign]
        # Mosquitto 2.0 grants a subscription wider than the ACL (SUBACK success), but it
        # checks read access per message: nothing outside the node's subtree is delivered,
        # though the node subscribed to node-2's and globex's topics above.
        assert set(node.messages) == {f"{own}/down/correction"}, node.messages
        assert refused_pub == foreign, refused_pub
        print(f"\nbroker ACL: 1 own publish accepted, {len(refused_pub)}/{len(foreign)} foreign "
              f"publishes refused, {len(refused_sub)}/5 foreign subscriptions refused at "
              f"SUBACK ({refused_sub}), 0 foreign messages delivered to the node")
    finally:
        node.close()
        central.close()


def _connect_fails(broker: TlsBroker, client: mqtt.Client) -> bool:
    done = threading.Event()
    client.on_connect = lambda *a: done.set()
    try:
        client.connect("127.0.0.1", broker.port)
    except OSError:  # TLS handshake refused
        return True
    client.loop_start()
    ok = done.wait(3)
    client.loop_stop()
    return not ok


def test_no_certificate_or_a_foreign_ca_gets_no_connection(tls_broker: TlsBroker,
                                                           tmp_path: Path) -> None:
    bare = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    bare.tls_set(ca_certs=str(tls_broker.central.ca))  # trusts the broker, shows no cert
    assert _connect_fails(tls_broker, bare)

    rogue_ca = CertificateAuthority.load_or_create(tmp_path / "rogue")
    forged = rogue_ca.issue_node(tmp_path / "rogue-node", "acme", "plant-1", "node-1")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(tls_broker.central.ca), certfile=str(forged.cert),
              keyfile=str(forged.key))
    assert _connect_fails(tls_broker, c)

    plain = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    assert _connect_fails(tls_broker, plain)  # no TLS at all


def test_ids_cannot_widen_topics_or_acl_lines() -> None:
    for bad in ("acme/#", "acme+", "a b", "acme\nuser central", "#"):
        with pytest.raises(ValueError, match="invalid"):
            acl_text([(bad, "plant-1", "node-1")])
