"""A tiny stand-in for central, on a real transport: verifies every up message with the
node's key, keeps it once per ``message_id`` (as central's Postgres does), acks it down,
and can send corrections and replay requests down. Tests pause acking to see that the
edge keeps its outbox until the ack."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from rae_sync.domain import Correction
from rae_sync.envelope import Envelope, open_envelope, seal
from rae_sync.errors import TransportError, VerificationError
from rae_sync.hlc import HybridClock
from rae_sync.messages import AckMsg, CorrectionMsg, Message, NodeRef, ReplayRequestMsg
from rae_sync.signing import Ed25519PrivateKey, Ed25519PublicKey
from rae_sync.topics import Direction, up_filter
from rae_sync.transport import InboundMessage, Transport

Node = tuple[str, str, str]


class CentralStub:
    def __init__(self, transport: Transport, key: Ed25519PrivateKey,
                 node_keys: dict[Node, Ed25519PublicKey], *, ack: bool = True,
                 verify: bool = True) -> None:
        self.transport = transport
        self.key = key
        self.node_keys = node_keys
        self.verify = verify  # False: trust the envelope (benchmarks of the edge alone)
        self.acking = threading.Event()
        if ack:
            self.acking.set()
        self.received: dict[str, Envelope] = {}  # by message_id: the dedupe
        self.deliveries = 0  # every arrival, duplicates included
        self.dead: list[tuple[str, str]] = []  # (reason, topic)
        self._pending: dict[Node, list[Envelope]] = defaultdict(list)
        self._seq: dict[Node, itertools.count[int]] = defaultdict(lambda: itertools.count(1))
        self._clock = HybridClock()
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._ack_loop, daemon=True)

    def start(self) -> CentralStub:
        self.transport.subscribe(up_filter(), self._on_up)
        self.transport.connect(timeout=15)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.transport.close()

    def _on_up(self, msg: InboundMessage) -> None:
        if not self.verify:
            raw = json.loads(msg.payload)
            self._keep(Envelope.model_construct(**raw))
            return
        try:
            got = open_envelope(msg.payload, lambda e: self.node_keys.get(e.node),
                                topic=msg.topic)
        except VerificationError as e:
            with self._cv:
                self.dead.append((e.reason, msg.topic))
                self._cv.notify_all()
            return
        self._keep(got.envelope)

    def _keep(self, env: Envelope) -> None:
        with self._cv:
            self.deliveries += 1
            self.received.setdefault(env.message_id, env)  # stored once
            self._pending[env.node].append(env)
            self._cv.notify_all()

    def _ack_loop(self) -> None:
        # acks leave from this thread: a handler must never wait for a PUBACK
        while not self._stop.is_set():
            time.sleep(0.02)
            if not self.acking.is_set():
                continue
            with self._cv:
                todo = {n: envs for n, envs in self._pending.items() if envs}
                self._pending = defaultdict(list)
            for node, envs in todo.items():
                for i in range(0, len(envs), 500):
                    part = envs[i:i + 500]
                    ack = AckMsg(message_ids=tuple(e.message_id for e in part),
                                 seqs=tuple(e.seq for e in part))
                    try:
                        self.send(node, ack)
                    except TransportError:
                        with self._cv:  # broker away: ack again later
                            self._pending[node].extend(part)

    def send(self, node: Node, msg: Message, message_id: str | None = None) -> Envelope:
        env = seal(msg, key=self.key, tenant_id=node[0], site_id=node[1], node_id=node[2],
                   direction=Direction.DOWN, seq=next(self._seq[node]),
                   hlc=self._clock.now(), message_id=message_id)
        self.transport.publish(env.topic, env.encode())
        return env

    def send_correction(self, node: Node, c: Correction, origin: Node) -> Envelope:
        return self.send(node, CorrectionMsg(
            correction=c, origin=NodeRef(tenant_id=origin[0], site_id=origin[1],
                                         node_id=origin[2])))

    def send_replay(self, node: Node, from_seq: int, to_seq: int) -> Envelope:
        return self.send(node, ReplayRequestMsg(from_seq=from_seq, to_seq=to_seq, reason="gap"))

    # -- what arrived -----------------------------------------------------------------
    def of_type(self, type_: str) -> list[Envelope]:
        with self._cv:
            return sorted((e for e in self.received.values() if e.type == type_),
                          key=lambda e: e.seq)

    def wait_until(self, cond: Callable[[CentralStub], bool], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not cond(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.2))
        return True


def main() -> None:
    """``python -m tests.edge.sync.central_stub --port P --key K --node-key N``: the stub
    in a process of its own (benchmarks), printing how many messages it holds."""
    import argparse
    from pathlib import Path

    from rae_sync.signing import load_private_key, load_public_key
    from rae_sync.transport import PahoTransport

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", type=Path, required=True, help="central's private key (PEM)")
    ap.add_argument("--node-key", type=Path, required=True, help="node's public key (PEM)")
    ap.add_argument("--node", default="acme/plant-1/node-1")
    ap.add_argument("--no-verify", action="store_true", help="ack without verifying")
    args = ap.parse_args()
    t, s, n = args.node.split("/")
    stub = CentralStub(PahoTransport("127.0.0.1", args.port, "central-stub-proc"),
                       load_private_key(args.key.read_text()),
                       {(t, s, n): load_public_key(args.node_key.read_text())},
                       verify=not args.no_verify).start()
    print("ready", flush=True)
    while True:
        time.sleep(0.5)
        print(f"received {len(stub.received)} deliveries {stub.deliveries}", flush=True)


if __name__ == "__main__":
    main()
