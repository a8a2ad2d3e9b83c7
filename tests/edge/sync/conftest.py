"""Fixtures for the sync agent tests: a broker (in-memory or a real mosquitto), a node
identity and central's key, a central stub, and an agent on the ``node`` fixture."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from rae_edge.node import EdgeNode
from rae_edge.sync_agent import SyncAgent, SyncOptions
from rae_sync.domain import Correction
from rae_sync.identity import NodeIdentity
from rae_sync.signing import Ed25519PrivateKey, generate_key
from rae_sync.transport import MemoryBroker, MemoryTransport, PahoTransport, Transport
from tests.edge.sync.central_stub import CentralStub
from tests.fixtures.mosquitto import Mosquitto

NODE = ("acme", "plant-1", "node-1")


@dataclass
class Broker:
    kind: str
    make: Callable[[str], Transport]
    stop: Callable[[], None]
    start: Callable[[], None]
    mosquitto: Mosquitto | None = None


@pytest.fixture(params=["memory", "mosquitto"])
def broker(request: pytest.FixtureRequest) -> Broker:
    if request.param == "memory":
        mem = MemoryBroker()
        return Broker("memory", lambda cid: MemoryTransport(mem, cid), mem.stop, mem.start)
    mosq: Mosquitto = request.getfixturevalue("mosquitto")
    return Broker("mosquitto",
                  lambda cid: PahoTransport("127.0.0.1", mosq.port, cid, reconnect_max_s=1),
                  mosq.stop, mosq.start, mosq)


@pytest.fixture
def central_key() -> Ed25519PrivateKey:
    return generate_key()


@pytest.fixture
def identity(central_key: Ed25519PrivateKey) -> NodeIdentity:
    return NodeIdentity.issue(*NODE, central_key.public_key())


@dataclass
class Rig:
    node: EdgeNode
    identity: NodeIdentity
    central: CentralStub
    broker: Broker
    agents: list[SyncAgent] = field(default_factory=list)

    def agent(self, wait: bool = True, **opts: object) -> SyncAgent:
        options = SyncOptions(**{"poll_s": 0.05, **opts})  # type: ignore[arg-type]
        # The node was opened without sync settings and gets its agent by hand here: from
        # now on its writer queues what it stores, as a node with sync on does.
        self.node.writer.sync_on = True
        a = SyncAgent(self.node, self.identity, self.broker.make("rae-edge-node-1"), options,
                      index=False)
        self.agents.append(a)
        a.start()
        if wait:  # connected, and its down subscription in force
            deadline = time.monotonic() + 30
            while not a.transport.connected and time.monotonic() < deadline:
                time.sleep(0.02)
            assert a.transport.connected, "the agent did not connect"
        return a

    def correct(self, n: int, start: int = 0) -> list[Correction]:
        out = []
        for i in range(start, start + n):
            c = Correction(tenant_id="acme", machine_id=f"press-{i % 3}",
                           text=f"correction {i}: sensor was loose", author="ana",
                           origin_node="node-1")
            assert self.node.duck.insert_correction(c)
            out.append(c)
        return out


@pytest.fixture
def rig(node: EdgeNode, identity: NodeIdentity, central_key: Ed25519PrivateKey,
        broker: Broker) -> Iterator[Rig]:
    central = CentralStub(broker.make("central-stub"), central_key,
                          {NODE: identity.public_key}).start()
    r = Rig(node, identity, central, broker)
    yield r
    for a in r.agents:
        a.stop()
    central.stop()
