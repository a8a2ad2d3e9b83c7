"""One contract, two transports: the in-memory broker and paho-mqtt against a real
mosquitto must behave the same for everything the sync relies on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from rae_sync.errors import TransportError
from rae_sync.transport import (
    InboundMessage,
    MemoryBroker,
    MemoryTransport,
    PahoTransport,
    Transport,
    topic_matches,
)
from tests.fixtures.mosquitto import Mosquitto


@dataclass
class Env:
    """A broker that can be restarted, and a way to make clients of it."""

    kind: str
    make_client: Callable[..., Transport]
    stop_broker: Callable[[], None]
    start_broker: Callable[[], None]
    clients: list[Transport] = field(default_factory=list)

    def client(self, client_id: str, connect: bool = True, **kw: Any) -> Transport:
        c = self.make_client(client_id, **kw)
        self.clients.append(c)
        if connect:
            c.connect(timeout=15)
        return c


@pytest.fixture(params=["memory", "mosquitto"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    if request.param == "memory":
        broker = MemoryBroker()
        e = Env("memory", lambda cid, **kw: MemoryTransport(broker, cid, **kw),
                broker.stop, broker.start)
    else:
        mosq: Mosquitto = request.getfixturevalue("mosquitto")
        e = Env("mosquitto",
                lambda cid, **kw: PahoTransport("127.0.0.1", mosq.port, cid, **kw),
                mosq.stop, mosq.start)
    yield e
    for c in e.clients:
        c.close()


class Inbox:
    """Collects delivered messages; ``wait_for(n)`` until n arrived."""

    def __init__(self) -> None:
        self.items: list[InboundMessage] = []
        self._cv = threading.Condition()

    def __call__(self, msg: InboundMessage) -> None:
        with self._cv:
            self.items.append(msg)
            self._cv.notify_all()

    def wait_for(self, n: int, timeout: float = 15.0) -> list[InboundMessage]:
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self.items) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            return list(self.items)

    def payloads(self) -> list[bytes]:
        with self._cv:
            return [m.payload for m in self.items]


def _wait(cond: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _settle(env: Env) -> None:
    # paho subscribes asynchronously after CONNACK: give the SUBACK a moment
    if env.kind == "mosquitto":
        time.sleep(0.3)


def test_publish_subscribe_round_trip(env: Env) -> None:
    sub = env.client("sub")
    inbox = Inbox()
    sub.subscribe("rae/v1/acme/p1/n1/up/#", inbox)
    _settle(env)
    pub = env.client("pub")
    payload = bytes(range(256)) * 4
    pub.publish("rae/v1/acme/p1/n1/up/correction", payload)
    got = inbox.wait_for(1)
    assert [(m.topic, m.payload, m.qos) for m in got] == [
        ("rae/v1/acme/p1/n1/up/correction", payload, 1)]
    assert pub.connected and sub.connected


def test_wildcards_route_only_matching_topics(env: Env) -> None:
    sub = env.client("sub")
    plus, hash_, exact = Inbox(), Inbox(), Inbox()
    sub.subscribe("rae/v1/+/+/+/up/correction", plus)
    sub.subscribe("rae/v1/acme/#", hash_)
    sub.subscribe("rae/v1/acme/p1/n1/down/ack", exact)
    _settle(env)
    pub = env.client("pub")
    for t in ["rae/v1/acme/p1/n1/up/correction", "rae/v1/globex/p9/n1/up/correction",
              "rae/v1/acme/p1/n1/down/ack", "rae/v1/acme/p1/n1/up/incident", "other/x"]:
        pub.publish(t, t.encode())
    pub.publish("rae/v1/zzz/last", b"end")  # matches nothing: a marker that all were routed
    assert len(hash_.wait_for(3)) == 3
    assert len(plus.wait_for(2)) == 2
    time.sleep(0.3)
    assert sorted(plus.payloads()) == [b"rae/v1/acme/p1/n1/up/correction",
                                       b"rae/v1/globex/p9/n1/up/correction"]
    assert sorted(hash_.payloads()) == [b"rae/v1/acme/p1/n1/down/ack",
                                        b"rae/v1/acme/p1/n1/up/correction",
                                        b"rae/v1/acme/p1/n1/up/incident"]
    assert exact.payloads() == [b"rae/v1/acme/p1/n1/down/ack"]


def test_shared_subscription_gives_each_message_to_one_member(env: Env) -> None:
    a, b = Inbox(), Inbox()
    env.client("w1").subscribe("$share/central/rae/v1/+/+/+/up/#", a)
    env.client("w2").subscribe("$share/central/rae/v1/+/+/+/up/#", b)
    watcher = Inbox()
    env.client("w3").subscribe("rae/v1/+/+/+/up/#", watcher)  # not in the group: sees all
    _settle(env)
    pub = env.client("pub")
    n = 40
    pub.publish_many([("rae/v1/acme/p1/n1/up/correction", str(i).encode()) for i in range(n)])
    assert len(watcher.wait_for(n)) == n
    assert _wait(lambda: len(a.items) + len(b.items) >= n)
    time.sleep(0.3)
    got = sorted(int(p) for p in a.payloads() + b.payloads())
    assert got == list(range(n)), "each message exactly once across the group"
    assert a.items and b.items, "the load is shared"


def test_persistent_session_keeps_messages_while_away(env: Env) -> None:
    inbox = Inbox()
    sub = env.client("edge-1")
    sub.subscribe("rae/v1/acme/p1/edge-1/down/#", inbox)
    _settle(env)
    sub.close()
    pub = env.client("central")
    for i in range(5):
        pub.publish("rae/v1/acme/p1/edge-1/down/correction", f"c{i}".encode())
    again = env.client("edge-1", connect=False)  # same client id: the broker kept its session
    again.subscribe("rae/v1/acme/p1/edge-1/down/#", inbox)
    again.connect(timeout=15)
    assert [m.payload for m in inbox.wait_for(5)] == [f"c{i}".encode() for i in range(5)]


def test_clean_start_forgets_the_session(env: Env) -> None:
    inbox = Inbox()
    sub = env.client("edge-2")
    sub.subscribe("rae/v1/acme/p1/edge-2/down/#", inbox)
    _settle(env)
    sub.close()
    env.client("central").publish("rae/v1/acme/p1/edge-2/down/ack", b"lost")
    fresh = env.client("edge-2", connect=False, clean_start=True)
    fresh.subscribe("rae/v1/acme/p1/edge-2/down/#", inbox)
    fresh.connect(timeout=15)
    _settle(env)
    env.client("central-2").publish("rae/v1/acme/p1/edge-2/down/ack", b"new")
    assert [m.payload for m in inbox.wait_for(1)] == [b"new"]
    time.sleep(0.3)
    assert inbox.payloads() == [b"new"]


def test_broker_restart_reconnects_and_keeps_subscriptions(env: Env) -> None:
    inbox = Inbox()
    states: list[bool] = []
    sub = env.client("sub", reconnect_max_s=1) if env.kind == "mosquitto" else env.client("sub")
    sub.add_connection_listener(states.append)
    sub.subscribe("rae/v1/acme/#", inbox)
    _settle(env)
    pub = env.client("pub", reconnect_max_s=1) if env.kind == "mosquitto" else env.client("pub")
    pub.publish("rae/v1/acme/p1/n1/up/x", b"before")
    assert inbox.wait_for(1)
    env.stop_broker()
    assert _wait(lambda: not pub.connected and not sub.connected)
    with pytest.raises(TransportError):
        pub.publish("rae/v1/acme/p1/n1/up/x", b"while down", timeout=2)
    env.start_broker()
    assert _wait(lambda: pub.connected and sub.connected, timeout=30)
    _settle(env)
    pub.publish("rae/v1/acme/p1/n1/up/x", b"after")
    assert _wait(lambda: b"after" in inbox.payloads())
    assert b"while down" not in inbox.payloads(), "a refused publish is not sent behind our back"
    assert False in states and states[-1] is True


def test_messages_queued_for_an_offline_session_survive_a_broker_restart(env: Env) -> None:
    inbox = Inbox()
    sub = env.client("edge-3")
    sub.subscribe("rae/v1/acme/p1/edge-3/down/#", inbox)
    _settle(env)
    sub.close()
    pub = env.client("central")
    pub.publish("rae/v1/acme/p1/edge-3/down/correction", b"kept")
    pub.close()
    env.stop_broker()
    env.start_broker()
    again = env.client("edge-3", connect=False)
    again.subscribe("rae/v1/acme/p1/edge-3/down/#", inbox)
    again.connect(timeout=15)
    assert [m.payload for m in inbox.wait_for(1)] == [b"kept"]


def test_a_failing_handler_gets_the_message_again_after_reconnect(env: Env) -> None:
    seen: list[bytes] = []
    fail = threading.Event()
    fail.set()

    def handler(msg: InboundMessage) -> None:
        seen.append(msg.payload)
        if fail.is_set():
            raise OSError("disk full")

    sub = env.client("edge-4")
    sub.subscribe("rae/v1/acme/p1/edge-4/down/#", handler)
    _settle(env)
    env.client("central").publish("rae/v1/acme/p1/edge-4/down/correction", b"c1")
    assert _wait(lambda: seen == [b"c1"])
    fail.clear()
    sub.close()
    again = env.client("edge-4", connect=False)
    again.subscribe("rae/v1/acme/p1/edge-4/down/#", handler)
    again.connect(timeout=15)
    assert _wait(lambda: seen == [b"c1", b"c1"])


def test_invalid_topics_and_filters_are_refused(env: Env) -> None:
    c = env.client("c")
    for bad in ["a/+/b", "a/#", ""]:
        with pytest.raises(TransportError):
            c.publish(bad, b"x")
    for bad_filter in ["a/#/b", "a/b+", "$share//x", "$share/g"]:
        with pytest.raises(TransportError):
            c.subscribe(bad_filter, lambda m: None)


def test_a_message_nobody_handled_is_not_lost(env: Env) -> None:
    sub = env.client("edge-5")
    inbox = Inbox()
    sub.subscribe("rae/v1/acme/p1/edge-5/down/#", inbox)
    _settle(env)
    sub.close()
    env.client("central").publish("rae/v1/acme/p1/edge-5/down/ack", b"a1")
    careless = env.client("edge-5")  # connects first: the backlog finds no handler yet
    time.sleep(0.5)
    careless.close()
    again = env.client("edge-5", connect=False)
    again.subscribe("rae/v1/acme/p1/edge-5/down/#", inbox)
    again.connect(timeout=15)
    assert [m.payload for m in inbox.wait_for(1)] == [b"a1"]


def test_not_connected_publish_is_an_error(env: Env) -> None:
    c = env.client("lonely", connect=False)
    with pytest.raises(TransportError):
        c.publish("rae/v1/a/b/c/up/x", b"x")


@pytest.mark.parametrize(("flt", "topic", "match"), [
    ("a/+/c", "a/b/c", True), ("a/+/c", "a/b/d", False), ("a/#", "a", True),
    ("a/#", "a/b/c", True), ("#", "$SYS/x", False), ("+/x", "$SYS/x", False),
    ("$share/g/a/+", "a/b", True), ("a/b", "a/b/c", False), ("a/+", "a", False),
])
def test_topic_matching(flt: str, topic: str, match: bool) -> None:
    assert topic_matches(flt, topic) is match
