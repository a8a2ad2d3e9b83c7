"""The ingest worker: an MQTT 5 shared subscription to every node's up messages, batched
into Postgres, acknowledged only after the commit.

One worker is one process with one persistent MQTT session (client id
``{share_group}-{index}``); N of them share ``$share/{group}/rae/v1/+/+/+/up/#``, so the
broker spreads the load and, when one dies, its unacknowledged messages are delivered
again (to it when it comes back with the same session, and by the edges, whose outbox
keeps every row until central's ack).

Per batch (up to ``ingest.batch_size`` messages or ``ingest.batch_wait_ms``):

1. every message is opened and verified (:class:`rae_central.ingest.Decoder`); a bad
   one is kept in ``dead_letters`` with its reason (logged with its topic) and the loop
   goes on;
2. the good ones are committed in ONE transaction (:meth:`CentralStore.ingest`): rows,
   seq tracking, fan-out rows; a message id seen before is a no-op;
3. after the commit: the MQTT acks to the broker; then, from a second thread so that
   waiting for their PUBACKs overlaps the next batch, an :class:`AckMsg` to each sender's
   down topic and the fanned-out corrections to the tenant's other nodes.

Central is the store of record for what goes down: a fan-out row stays in Postgres until
its node acks applying it (an ``AckMsg`` up). A node sends a ``ResumeMsg`` on every
connect; the worker that commits it sends everything still owed to that node at once, and
every worker's chores send rows that are due (:meth:`CentralStore.claim_due_fanout`), in
windows per node. Nothing depends on what the broker keeps: a broker that lost its
sessions, or a node away for a month, gets the same rows again.

The worker connects as the application's login role (``app_database_url``), which row
level security binds; it refuses to start as a superuser or an owner
(:func:`rae_central.rls.check_app_role`). Every transaction is scoped to one tenant.

Periodically the worker asks nodes with a lasting seq gap to replay it
(:class:`ReplayRequestMsg`), and sends due fan-out rows (see above).

The broker ack waits for the commit, which paho's handler-returns-then-ack cannot batch:
:class:`DeferredAckPahoTransport` hands each message on with its own ack callback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from sqlalchemy.exc import DBAPIError, OperationalError

from rae_central.config import CentralSettings
from rae_central.db.engine import make_engine
from rae_central.db.migrate import check_current
from rae_central.ingest import Decoder, DownSigner, NodeKeys
from rae_central.keys import load_or_create
from rae_central.rls import check_app_role
from rae_central.store import Accepted, CentralStore, FanoutItem, NodeKey
from rae_sync.errors import TransportError, VerificationError
from rae_sync.topics import parse_topic, shared, up_filter
from rae_sync.transport import InboundMessage, PahoTransport, Transport

log = logging.getLogger(__name__)

Ack = Callable[[], None]


@dataclass
class Delivery:
    msg: InboundMessage
    ack: Ack


class DeferredAckPahoTransport(PahoTransport):
    """A :class:`PahoTransport` whose inbound messages go, with an ack callback each, to
    ``sink`` instead of a handler; the broker gets the PUBACK when the callback runs.

    An ack for a message received on an earlier connection is skipped: the broker
    delivers that message again on the new one (same session), and acking a packet id of
    a previous connection could acknowledge another message."""

    def __init__(self, *args: Any, sink: Callable[[Delivery], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sink = sink
        self._epoch = 0

    # The epoch counts network connections, bumped at CONNACK and at disconnect, not by
    # the transport's "connected" listener: that one fires only after the SUBACKs, and the
    # broker redelivers a kept session's unacked messages right after CONNACK. Tying acks
    # to it skipped the acks of exactly those redelivered messages, which then filled the
    # broker's in-flight window and stalled the worker after every reconnect.
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any,
                    props: Any) -> None:
        self._epoch += 1
        super()._on_connect(client, userdata, flags, rc, props)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any,
                       props: Any) -> None:
        self._epoch += 1
        super()._on_disconnect(client, userdata, flags, rc, props)

    def _on_message(self, client: mqtt.Client, userdata: Any, m: mqtt.MQTTMessage) -> None:
        msg = InboundMessage(m.topic, bytes(m.payload), m.qos, bool(m.dup))
        epoch, mid, qos = self._epoch, m.mid, m.qos

        def ack() -> None:
            if qos > 0 and epoch == self._epoch:
                client.ack(mid, qos)

        self._sink(Delivery(msg, ack))


@dataclass
class WorkerStats:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    dead: int = 0
    batches: int = 0
    replays: int = 0
    fanout: int = 0
    started: float = field(default_factory=time.monotonic)


def _node_of(topic: str) -> NodeKey | None:
    try:
        p = parse_topic(topic)
    except ValueError:
        return None
    return (p.tenant_id, p.site_id, p.node_id)


class IngestWorker:
    """One worker; :meth:`run` until :meth:`stop`."""

    def __init__(self, settings: CentralSettings, *, index: int = 0,
                 transport: Transport | None = None) -> None:
        self.settings = settings
        # The application's login role, never the owner: row-level security binds it.
        self.engine = make_engine(settings.app_url(), pool_size=2,
                                  application_name=f"rae-central-worker-{index}")
        self.db_role = check_app_role(self.engine)
        check_current(self.engine)
        self.store = CentralStore(self.engine)
        self.keys = NodeKeys(self.store.node_keys)
        self.decoder = Decoder(self.keys, settings.ingest.max_clock_skew_s)
        self.signer = DownSigner(load_or_create(settings.signing_key_file), self.engine)
        self.inbox: queue.Queue[Delivery] = queue.Queue()
        self.stats = WorkerStats()
        # Acks to the edges and the fan-out go out from their own thread, so waiting for
        # their PUBACKs overlaps the next batch (the rows are committed already).
        self._answers: queue.Queue[
            tuple[list[Accepted], list[FanoutItem], list[NodeKey]] | None] = queue.Queue(
                maxsize=4)
        self._answerer = threading.Thread(target=self._answer_loop, daemon=True,
                                          name=f"answers-{index}")
        self._stop = threading.Event()
        self._next_sweep = 0.0
        ing = settings.ingest
        self.client_id = f"{ing.share_group}-{index}"
        if transport is None:
            assert settings.mqtt_url, "a worker needs an MQTT URL"
            from rae_central.broker_setup import central_access

            access = central_access(settings)  # TLS client certificate + broker password
            transport = DeferredAckPahoTransport.from_url(
                settings.mqtt_url, self.client_id, sink=self.inbox.put,
                session_expiry_s=ing.session_expiry_s, receive_maximum=ing.receive_maximum,
                reconnect_max_s=ing.reconnect_max_s,
                tls=access.tls if access else None,
                username=access.username if access else None,
                password=access.password if access else None)
            transport.subscribe(shared(ing.share_group, up_filter()), lambda m: None)
        else:
            # Any other Transport: the handler waits until its message is committed, so
            # acks still follow the commit (one message per batch per client: slow).
            transport.subscribe(shared(ing.share_group, up_filter()), self._blocking_handler)
        self.transport = transport

    def _blocking_handler(self, msg: InboundMessage) -> None:
        done = threading.Event()
        self.inbox.put(Delivery(msg, done.set))
        while not done.wait(0.5):
            if self._stop.is_set():
                raise TransportError("worker stopping before the message was committed")

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        self.transport.connect(timeout=None)
        self._answerer.start()
        log.info("ingest worker %s started (pid %s)", self.client_id, os.getpid())
        next_chores = 0.0
        try:
            while not self._stop.is_set():
                batch = self._collect()
                if batch:
                    self.process(batch)
                if time.monotonic() >= next_chores:
                    self._chores()
                    next_chores = time.monotonic() + 1.0
        finally:
            self._answers.put(None)  # what was committed is answered before we go
            self._answerer.join(timeout=30)
            self.transport.close()
            self.engine.dispose()
            log.info("ingest worker %s stopped: %s", self.client_id, self.stats)

    def stop(self) -> None:
        self._stop.set()

    def _collect(self) -> list[Delivery]:
        ing = self.settings.ingest
        try:
            first = self.inbox.get(timeout=0.5)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + ing.batch_wait_ms / 1000
        while len(batch) < ing.batch_size:
            try:
                batch.append(self.inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def process(self, batch: list[Delivery]) -> None:
        """Verifies, commits, answers and acknowledges one batch."""
        self.stats.received += len(batch)
        # one small query per batch: a revocation counts at once
        senders = {n for d in batch if (n := _node_of(d.msg.topic)) is not None}
        self._retry_db(lambda: self.keys.refresh(senders, new_batch=True))
        good: list[Accepted] = []
        dead: list[tuple[str, bytes, str, NodeKey | None]] = []
        for d in batch:
            try:
                good.append(self.decoder.decode(d.msg.topic, d.msg.payload))
            except VerificationError as e:
                log.warning("dead letter from %s: %s: %s", d.msg.topic, e.reason, e)
                dead.append((d.msg.topic, d.msg.payload, f"{e.reason}: {e}",
                             _node_of(d.msg.topic)))
            except Exception as e:  # a bug must not stop the loop either
                log.exception("cannot decode a message from %s", d.msg.topic)
                dead.append((d.msg.topic, d.msg.payload, f"internal: {type(e).__name__}: {e}",
                             _node_of(d.msg.topic)))
        outcome_new: list[Accepted] = []
        outcome_dup: list[Accepted] = []
        fanout: list[FanoutItem] = []
        resumed: list[NodeKey] = []
        if good:
            for part, rejected in self._commit(good):
                outcome_new += part.new
                outcome_dup += part.duplicates
                fanout += part.fanout
                resumed += part.resumed
                dead += rejected
        if dead:
            self._retry_db(lambda: self.store.dead_letter(dead))
        self.stats.accepted += len(outcome_new)
        self.stats.duplicates += len(outcome_dup)
        self.stats.dead += len(dead)
        self.stats.batches += 1
        # Everything is committed (rows, fan-out rows, dead letters): free the broker's
        # in-flight window first, then answer the edges and fan out.
        for d in batch:
            d.ack()
        if self._answerer.is_alive():
            self._answers.put((outcome_new + outcome_dup, fanout, resumed))
        else:  # process() called on its own (tests, profiling)
            self._answer(outcome_new + outcome_dup, fanout, resumed)

    def _answer_loop(self) -> None:
        while (item := self._answers.get()) is not None:
            try:
                self._answer(*item)
            except Exception:  # never lose the thread: the edges re-send, sweeps re-send
                log.exception("answering a batch failed")

    def _retry_db(self, fn: Callable[[], Any]) -> Any:
        """Runs ``fn`` until the database answers (it may be restarting); nothing is
        acknowledged meanwhile, so nothing is lost."""
        delay = 0.2
        while True:
            try:
                return fn()
            except OperationalError as e:
                if self._stop.is_set():
                    raise
                log.warning("database unavailable (%s): retrying in %.1fs",
                            str(e).splitlines()[0], delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _commit(self, good: list[Accepted]) -> list[tuple[Any, list[Any]]]:
        try:
            return [(self._retry_db(lambda: self.store.ingest(good, self.signer.fanout)), [])]
        except DBAPIError as e:
            if len(good) == 1:  # the database refuses this one message: dead-letter it
                a = good[0]
                log.warning("database refused %s from %s: %s", a.message_id,
                            "/".join(a.node), e.orig)
                return [(_Empty(), [(f"rae/v1/{'/'.join(a.node)}/up/{a.type}", b"",
                                     f"refused by the database: {e.orig}", a.node)])]
            mid = len(good) // 2  # find the culprit by halves; the rest goes in
            return self._commit(good[:mid]) + self._commit(good[mid:])

    def _answer(self, stored: list[Accepted], fanout: list[FanoutItem],
                resumed: list[NodeKey] | None = None) -> None:
        by_node: dict[NodeKey, list[Accepted]] = {}
        for a in stored:
            by_node.setdefault(a.node, []).append(a)
        out = [self.signer.ack(node, items) for node, items in by_node.items()]
        try:
            self.transport.publish_many(out) if out else None
        except TransportError as e:
            # The rows are committed: the edge sends them again and gets a new ack.
            log.warning("acks not sent (%s): the edges will re-send and be acked then", e)
        self._send_fanout(fanout)
        if resumed:  # a node (re)connected or acked: what it is owed goes now, in windows
            ing = self.settings.ingest
            self._send_fanout(self._retry_db(lambda: self.store.claim_due_fanout(
                ing.fanout_resend_s, ing.fanout_window, nodes=resumed)))

    def _send_fanout(self, items: list[FanoutItem]) -> None:
        """Publishes fan-out rows; they stay in Postgres until their node acks applying
        them (a publish that fails is sent again when due)."""
        if not items:
            return
        try:
            self.transport.publish_many([(f.topic, f.payload) for f in items])
        except TransportError as e:
            log.warning("fan-out of %d messages deferred (%s)", len(items), e)
            # due again at the next sweep once the broker is back (if the database is away
            # too: sent again when their node is next heard from, or resumes)
            with contextlib.suppress(OperationalError):
                self.store.fanout_unsent(items)
            return
        self.stats.fanout += len(items)

    def _chores(self) -> None:
        ing = self.settings.ingest
        try:
            if not self.transport.connected:
                return
            for gap in self.store.due_replays(ing.gap_grace_s, ing.replay_every_s):
                msgs = [self.signer.replay(gap.node, lo, hi) for lo, hi in gap.ranges[:20]]
                log.info("seq gap at %s: asking for %s", "/".join(gap.node), gap.ranges[:20])
                self.transport.publish_many(msgs)
                self.stats.replays += len(msgs)
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + ing.fanout_sweep_s
                self._send_fanout(self.store.claim_due_fanout(ing.fanout_resend_s,
                                                              ing.fanout_window))
        except (OperationalError, TransportError) as e:
            log.warning("worker chores skipped: %s", e)


class _Empty:
    new: list[Accepted] = []  # noqa: RUF012
    duplicates: list[Accepted] = []  # noqa: RUF012
    fanout: list[FanoutItem] = []  # noqa: RUF012
    resumed: list[NodeKey] = []  # noqa: RUF012


def run_worker(settings: CentralSettings, index: int | None = None) -> None:
    """Entry point of one worker process; SIGTERM/SIGINT stop it after its batch."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
    if index is None:
        index = int(os.environ.get("RAE_CENTRAL_WORKER_INDEX", "0"))
    worker = IngestWorker(settings, index=index)

    def _term(signum: int, frame: Any) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    worker.run()
