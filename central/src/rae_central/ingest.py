"""From wire to rows, and from rows to down messages: the part of a worker that knows
:mod:`rae_sync`'s envelope and message classes, with no MQTT in it.

- :class:`NodeKeys`: the senders' public keys (``rae_node_key``, one query per batch);
- :class:`Decoder` opens one received message (topic + bytes): schema, sender key
  (enrolled and not revoked), signature, payload, that the payload's tenant is the
  sender's, and that its clock stamps are not ahead of central's clock by more than
  ``max_ahead_s`` (:mod:`rae_sync.validation`); it returns an
  :class:`~rae_central.store.Accepted` or raises a ``VerificationError`` whose
  ``reason`` and text go to the dead-letter table;
- :class:`DownSigner` seals what central sends down (ack, replay request, a fanned-out
  correction or verdict) with central's key; its seq comes from a Postgres sequence, so
  it only grows across every worker (a fanned-out message's seq is its fan-out row's id:
  the receiving node's down position).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Engine, text

from rae_central.feedback import KIND as FEEDBACK
from rae_central.feedback import down_payload, record_of
from rae_central.store import Accepted, NodeKey, NodeStatus
from rae_sync.envelope import SCHEMA_VERSION, Envelope, new_message_id, open_envelope, seal
from rae_sync.errors import Malformed
from rae_sync.hlc import HybridClock
from rae_sync.messages import (
    AckMsg,
    AuditEntryMsg,
    CorrectionMsg,
    DriftAlertMsg,
    FeedbackMsg,
    IncidentMsg,
    Message,
    MessageType,
    NodeStatusMsg,
    ReplayRequestMsg,
    ResumeMsg,
)
from rae_sync.signing import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
    canonical_json,
    load_public_key,
    sign,
)
from rae_sync.topics import Direction, down_topic
from rae_sync.validation import DEFAULT_MAX_AHEAD_S, check_ordering

# Looks up (public key PEM, revoked) of the given nodes: CentralStore.node_keys.
KeySource = Callable[[Iterable[NodeKey]], dict[NodeKey, tuple[str, bool]]]


class NodeKeys:
    """Public keys of the active nodes that are sending, looked up in Postgres through
    ``rae_node_key`` (the application cannot read other tenants' ``nodes`` rows): the
    worker refreshes the nodes of each batch before verifying it, so a revocation counts
    from the next batch; a node not refreshed yet is looked up on its own."""

    def __init__(self, source: KeySource) -> None:
        self._source = source
        self._keys: dict[NodeKey, Ed25519PublicKey] = {}
        self._pem: dict[NodeKey, str] = {}
        self._checked: set[NodeKey] = set()  # looked up since the batch began
        self._lock = threading.Lock()

    def refresh(self, nodes: Iterable[NodeKey], *, new_batch: bool = False) -> None:
        nodes = set(nodes)
        found = self._source(nodes) if nodes else {}
        with self._lock:
            if new_batch:
                self._checked = set()
            self._checked |= nodes
            for n in nodes:
                pem, revoked = found.get(n, ("", True))
                if revoked:
                    self._keys.pop(n, None)
                    self._pem.pop(n, None)
                elif self._pem.get(n) != pem:
                    self._keys[n] = load_public_key(pem)
                    self._pem[n] = pem

    def get(self, node: NodeKey) -> Ed25519PublicKey | None:
        with self._lock:
            key = self._keys.get(node)
            checked = node in self._checked
        if key is None and not checked:  # a node not named by the batch's topics
            self.refresh([node])
            with self._lock:
                key = self._keys.get(node)
        return key


def _same_tenant(env: Envelope, tenant: str, what: str) -> None:
    if tenant != env.tenant_id:
        raise Malformed(f"{what} belongs to tenant {tenant!r}, but node "
                        f"{'/'.join(env.node)} sent it: a node writes its own tenant only")


class Decoder:
    def __init__(self, keys: NodeKeys, max_ahead_s: float = DEFAULT_MAX_AHEAD_S) -> None:
        self.keys = keys
        self.max_ahead_s = max_ahead_s

    def decode(self, topic: str, payload: bytes) -> Accepted:
        rec = open_envelope(payload, lambda e: self.keys.get(e.node), topic=topic)
        env, msg = rec.envelope, rec.message
        if env.direction != Direction.UP:
            raise Malformed("central accepts only up messages")
        check_ordering(env, msg, max_ahead_s=self.max_ahead_s)
        return to_accepted(env, msg)


def to_accepted(env: Envelope, msg: Message) -> Accepted:
    base: dict[str, Any] = {"node": env.node, "message_id": env.message_id, "seq": env.seq,
                            "hlc": env.hlc, "type": str(env.type), "message": msg,
                            "payload": env.payload}
    if isinstance(msg, CorrectionMsg):
        c = msg.correction
        _same_tenant(env, c.tenant_id, f"correction {c.id}")
        record = c.model_dump(exclude={"tenant_id", "origin_node"})
        record["hlc"] = c.hlc or env.hlc
        record["method"] = str(c.method)
        return Accepted(kind="correction", record=record, **base)
    if isinstance(msg, IncidentMsg):
        i = msg.incident
        _same_tenant(env, i.tenant_id, f"incident {i.id}")
        return Accepted(kind="incident", record=i.model_dump(exclude={"tenant_id"}), **base)
    if isinstance(msg, AuditEntryMsg):
        _same_tenant(env, msg.entry.tenant_id, f"audit entry {msg.entry.seq}")
        return Accepted(kind="audit", record=msg.entry.model_dump(mode="json"), **base)
    if isinstance(msg, DriftAlertMsg):  # stored by rae_central.drift_alerts
        _same_tenant(env, msg.tenant_id, f"drift alert {msg.id}")
        return Accepted(kind="drift_alert", record=msg.model_dump(mode="json"), **base)
    if isinstance(msg, FeedbackMsg):  # stored and fanned out by rae_central.feedback
        _same_tenant(env, msg.feedback.tenant_id, f"feedback {msg.feedback.id}")
        return Accepted(kind=FEEDBACK, record=record_of(msg), **base)
    if isinstance(msg, NodeStatusMsg):
        lag = 0.0
        if msg.oldest_unacked_at is not None:
            lag = max(0.0, time.time() - msg.oldest_unacked_at.timestamp())
        return Accepted(kind="status", status=NodeStatus(msg.outbox_depth, lag), **base)
    if isinstance(msg, AckMsg):  # the node applied these down messages
        return Accepted(kind="ack", record={"seqs": list(msg.seqs),
                                            "message_ids": list(msg.message_ids)}, **base)
    if isinstance(msg, ResumeMsg):
        return Accepted(kind="resume", record={"cursor": msg.cursor,
                                               "applied": msg.applied}, **base)
    return Accepted(kind="other", **base)


class DownSigner:
    """Seals down messages with central's key; seqs from the ``down_seq`` sequence."""

    def __init__(self, key: Ed25519PrivateKey, engine: Engine, block: int = 1000) -> None:
        self.key = key
        self.engine = engine
        self.clock = HybridClock()
        self._block = block
        self._seqs: list[int] = []
        self._lock = threading.Lock()

    def _next_seq(self) -> int:
        with self._lock:
            if not self._seqs:
                with self.engine.begin() as conn:
                    self._seqs = list(conn.execute(text(
                        "SELECT nextval('down_seq') FROM generate_series(1, :n)"),
                        {"n": self._block}).scalars())
                self._seqs.reverse()
            return self._seqs.pop()

    def seal(self, node: NodeKey, message: Message) -> tuple[str, bytes]:
        env = seal(message, key=self.key, tenant_id=node[0], site_id=node[1],
                   node_id=node[2], direction=Direction.DOWN, seq=self._next_seq(),
                   hlc=self.clock.now())
        return env.topic, env.encode()

    def seal_payload(self, node: NodeKey, type_: MessageType, payload: dict[str, Any],
                     seq: int | None = None) -> tuple[str, bytes, str]:
        """The fast path for fan-out: an already validated payload (the wire form of a
        message that came up) sealed without another pydantic round trip. The bytes are
        those :func:`rae_sync.envelope.seal` + ``encode`` make (the tests open them with
        :func:`~rae_sync.envelope.open_envelope`)."""
        # Canonical JSON sorts keys, and "signature" falls between "seq" and "site_id":
        # the signed bytes and the published bytes are two halves joined with or without
        # the signature, so the (large) payload is dumped once, not twice.
        message_id = new_message_id()
        head = canonical_json({
            "direction": Direction.DOWN.value, "hlc": str(self.clock.now()),
            "message_id": message_id, "node_id": node[2], "payload": payload,
            "schema_version": SCHEMA_VERSION,
            "seq": self._next_seq() if seq is None else seq})
        tail = canonical_json({"site_id": node[1], "tenant_id": node[0], "type": type_.value})
        signature = sign(self.key, head[:-1] + b"," + tail[1:])
        data = head[:-1] + b',"signature":' + canonical_json(signature) + b"," + tail[1:]
        return down_topic(node[0], node[1], node[2], type_.value), data, message_id

    def ack(self, node: NodeKey, accepted: list[Accepted]) -> tuple[str, bytes]:
        return self.seal(node, AckMsg(message_ids=tuple(a.message_id for a in accepted),
                                      seqs=tuple(a.seq for a in accepted)))

    def replay(self, node: NodeKey, from_seq: int, to_seq: int) -> tuple[str, bytes]:
        return self.seal(node, ReplayRequestMsg(from_seq=from_seq, to_seq=to_seq,
                                                reason="gap"))

    def fanout(self, a: Accepted, peer: NodeKey, position: int) -> tuple[str, bytes, str]:
        """The correction (or verdict) in ``a`` as a down message to ``peer``, naming its
        origin, with ``position`` (its fan-out row) as seq: (topic, bytes, message id)."""
        if isinstance(a.message, FeedbackMsg):
            return self.seal_payload(peer, MessageType.FEEDBACK, down_payload(a), seq=position)
        assert isinstance(a.message, CorrectionMsg) and a.payload is not None
        origin = {"tenant_id": a.node[0], "site_id": a.node[1], "node_id": a.node[2]}
        return self.seal_payload(peer, MessageType.CORRECTION,
                                 {**a.payload, "origin": origin}, seq=position)
