"""A minimal edge for central's tests: a real enrolled identity, a real paho MQTT 5
session, signed envelopes with a growing seq, and the edge's one rule of delivery: a
message is sent again until central's ack names it (as the edge's durable outbox does)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rae_sync.domain import Correction
from rae_sync.envelope import Envelope, open_envelope, seal
from rae_sync.hlc import HybridClock
from rae_sync.identity import NodeIdentity
from rae_sync.messages import AckMsg, CorrectionMsg, Message, ReplayRequestMsg
from rae_sync.topics import Direction, node_down_filter
from rae_sync.transport import InboundMessage, PahoTransport


@dataclass
class EdgeSim:
    identity: NodeIdentity
    mqtt_url: str
    seq: int = 0
    clock: HybridClock = field(default_factory=HybridClock)
    outbox: dict[str, Envelope] = field(default_factory=dict)  # message_id -> envelope
    acked: set[str] = field(default_factory=set)
    down: list[Envelope] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    transport: PahoTransport | None = None

    @classmethod
    def from_file(cls, path: Path, mqtt_url: str) -> EdgeSim:
        return cls(NodeIdentity.load(path), mqtt_url)

    @property
    def node(self) -> tuple[str, str, str]:
        return self.identity.node

    def connect(self) -> EdgeSim:
        ident = self.identity
        if ident.mqtt_password:  # a secure broker: certificate, password, bound client id
            t = PahoTransport.from_url(self.mqtt_url, ident.mqtt_client_id,
                                       session_expiry_s=3600, tls=ident.tls,
                                       username=ident.mqtt_username,
                                       password=ident.mqtt_password)
        else:
            t = PahoTransport.from_url(self.mqtt_url, f"edge-{'-'.join(self.node)}",
                                       session_expiry_s=3600)
        t.subscribe(node_down_filter(*self.node), self._on_down)
        t.connect(timeout=15)
        self.transport = t
        return self

    def close(self) -> None:
        if self.transport:
            self.transport.close()

    def _on_down(self, m: InboundMessage) -> None:
        rec = open_envelope(m.payload, self.identity.central_public_key, topic=m.topic)
        with self.lock:
            self.down.append(rec.envelope)
            if isinstance(rec.message, AckMsg):
                self.acked.update(rec.message.message_ids)

    def envelope(self, msg: Message, seq: int | None = None) -> Envelope:
        if seq is None:
            self.seq += 1
            seq = self.seq
        return seal(msg, key=self.identity.private_key, tenant_id=self.node[0],
                    site_id=self.node[1], node_id=self.node[2], direction=Direction.UP,
                    seq=seq, hlc=self.clock.now())

    def correction(self, text: str, target_id: str | None = None) -> Envelope:
        c = Correction(tenant_id=self.node[0], machine_id="press-7", text=text,
                       author="ana", target_id=target_id, origin_node=self.node[2],
                       hlc=str(self.clock.now()))
        env = self.envelope(CorrectionMsg(correction=c))
        self.outbox[env.message_id] = env
        return env

    def send(self, envs: list[Envelope], chunk: int = 20_000) -> None:
        """Publishes ``envs`` (QoS 1) and waits for the broker's PUBACKs, ``chunk`` at a
        time (paho holds at most 65,535 messages in flight: 16-bit packet ids)."""
        assert self.transport is not None
        for i in range(0, len(envs), chunk):
            self.transport.publish_many([(e.topic, e.encode()) for e in envs[i:i + chunk]])

    def unacked(self) -> list[Envelope]:
        with self.lock:
            return [e for mid, e in self.outbox.items() if mid not in self.acked]

    def deliver_all(self, timeout: float = 60.0, resend_after: float = 3.0) -> None:
        """Sends what is not acked, again and again, until central acked everything."""
        deadline = time.monotonic() + timeout
        while True:
            pending = self.unacked()
            if not pending:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(pending)} messages of {'/'.join(self.node)} "
                                     f"never acked")
            try:
                self.send(pending)
            except Exception:  # broker away: try again shortly, as the edge agent does
                time.sleep(0.5)
                continue
            wait_until = time.monotonic() + resend_after
            while time.monotonic() < wait_until and self.unacked():
                time.sleep(0.05)

    def ack_applied(self, envs: list[Envelope]) -> None:
        """Acks down messages as applied, as a node does: central then drops them."""
        ack = self.envelope(AckMsg(message_ids=tuple(e.message_id for e in envs),
                                   seqs=tuple(e.seq for e in envs)))
        self.outbox[ack.message_id] = ack
        self.deliver_all()

    def received(self, cls: type[Message]) -> list[Envelope]:
        with self.lock:
            return [e for e in self.down if e.type == cls.TYPE]

    def replays(self) -> list[ReplayRequestMsg]:
        return [e.message_as(ReplayRequestMsg) for e in self.received(ReplayRequestMsg)]


def wait_for(pred: object, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(pred) and pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
