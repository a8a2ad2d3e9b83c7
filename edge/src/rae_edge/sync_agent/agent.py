"""``SyncAgent``: the edge node's durable publisher to central, and the receiver of what
central sends down.

Up: the outbox (DuckDB, written in the same transaction as the memory) is sealed in
batches into signed envelopes with the node's own ``seq`` and HLC (``SyncLedger``), then
published with QoS 1 on a persistent session. A row leaves the outbox only when central's
``AckMsg`` names it (a broker PUBACK only says the broker has it). What is not acked is
sent again after a reconnect, or when no ack came for ``resend_after_s``; the same
envelope (same ``message_id``) each time, so central's dedupe makes it exactly once.
At most ``window`` envelopes are sealed and unacked at a time. Above ``outbox_limit`` rows
the agent raises an alert (stats, node status, log): it never drops a row.

Down (``rae/v1/{tenant}/{site}/{node}/down/#``, signed by central): ``AckMsg`` acks;
``ReplayRequestMsg`` re-sends a seq range; ``CorrectionMsg`` (from another plant) and
``FeedbackMsg`` are queued for the :class:`~rae_edge.sync_agent.down_apply.DownApplier`,
which applies them in batches (stored idempotent on their ids, never put in the outbox
again, pushed to the tablets watching their machines; indexed for search in the
background by :class:`~rae_edge.sync_agent.index_later.IndexLater`) and only then
has them acked up: central keeps each until that ack, and the node's position (the
highest such seq applied) moves. On every connect the agent sends a ``ResumeMsg`` with
that position: central sends again whatever it still owes the node, so nothing depends
on what the broker kept.

A bad down message never stalls the stream: one that does not verify, or a correction
whose clock stamps lie more than ``max_clock_skew_s`` ahead of this node's clocks, is set
aside with its reason (:meth:`SyncLedger.set_aside`) and the handler returns, so the
broker gets its PUBACK; a correction refused for its clock is not acked up, so central
keeps it (shown in its console) and sends it again later.

Handlers never wait for a PUBACK (that would block the MQTT network thread): they hand
work to the agent's thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from rae_edge.config import EdgeSettings
from rae_edge.store.duck import DuckStore
from rae_edge.sync_agent.down_apply import Applied, DownApplier
from rae_edge.sync_agent.index_later import IndexLater
from rae_edge.sync_agent.ledger import Sealed, SyncLedger
from rae_edge.write.writer import FactWriter, IndexPort
from rae_sync.domain import Feedback
from rae_sync.envelope import Envelope, open_envelope, seal_encoded
from rae_sync.errors import ClockSkew, TransportError, VerificationError
from rae_sync.hlc import Hlc
from rae_sync.identity import NodeIdentity
from rae_sync.messages import (
    AckMsg,
    CorrectionMsg,
    FeedbackMsg,
    Message,
    NodeStatusMsg,
    ReplayRequestMsg,
    ResumeMsg,
)
from rae_sync.topics import Direction, node_down_filter, up_topic
from rae_sync.transport import InboundMessage, PublishHandle, Transport
from rae_sync.validation import DEFAULT_MAX_AHEAD_S, check_ordering

log = logging.getLogger("rae_edge.sync")
ACK_MAX = 1000  # down messages acked up in one AckMsg


@dataclass(frozen=True)
class SyncOptions:
    """How the agent batches, bounds and retries (``EdgeSettings.sync`` fills some)."""

    batch_size: int = 500  # outbox rows sealed / envelopes published per step
    window: int = 5000  # most envelopes sealed and not acked at a time
    outbox_limit: int = 1_000_000  # alert above this outbox depth (never drop)
    resend_after_s: float = 30.0  # re-send what is unacked when no ack came for this long
    status_every_s: float = 60.0  # node status to central
    status_busy_s: float = 5.0  # ... while the last status showed a backlog (console lag)
    retain_acked: int = 10_000  # acked envelopes kept for replays
    poll_s: float = 0.2  # how often an idle agent looks at the outbox
    publish_timeout_s: float = 30.0
    max_clock_skew_s: float = DEFAULT_MAX_AHEAD_S  # down stamps further ahead are refused
    apply_batch: int = 256  # most down messages applied in one write


@dataclass(frozen=True)
class SyncStats:
    """What the agent reports (the node's health endpoint, the console via node status)."""

    connected: bool
    outbox_depth: int
    outbox_limit: int
    last_seq: int
    last_acked_seq: int
    last_ack_at: datetime | None
    unacked: int
    published: int
    acked: int
    applied: int
    rejected: int
    alerts: tuple[str, ...] = field(default_factory=tuple)


class FeedbackSink(Protocol):
    """Where verdicts from other plants go (the memory service's feedback)."""

    def store(self, fb: Feedback, *, outbox: bool) -> bool: ...


class SyncHost(Protocol):
    """What the agent needs of the node (the built node has these): its tenant, its
    DuckDB (outbox, ledger), settings, the one writer and the feedback store."""

    @property
    def tenant_id(self) -> str: ...

    @property
    def duck(self) -> DuckStore: ...

    @property
    def settings(self) -> EdgeSettings: ...

    @property
    def writer(self) -> FactWriter: ...

    @property
    def indexer(self) -> IndexPort: ...

    @property
    def feedback(self) -> FeedbackSink: ...


class SyncAgent:
    """Syncs one edge node with central over a :class:`~rae_sync.transport.Transport`."""

    def __init__(self, node: SyncHost, identity: NodeIdentity, transport: Transport,
                 options: SyncOptions | None = None, *, index: bool = True) -> None:
        if identity.tenant_id != node.tenant_id:
            raise ValueError(f"identity is for tenant {identity.tenant_id!r}, the node serves "
                             f"{node.tenant_id!r}")
        self.node = node
        self.identity = identity
        self.transport = transport
        self.options = options or SyncOptions()
        self.index = index
        self.ledger = SyncLedger(node.duck, identity.tenant_id)
        self.clock = self.ledger.clock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._work: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._sent_upto = 0  # envelopes up to this seq went out on the current connection
        self._last_progress = time.monotonic()
        self._last_status = 0.0
        self._reported_backlog = False
        self._last_bound_check = 0.0
        self._last_prune = 0.0
        self._inflight: tuple[list[Sealed], list[PublishHandle]] | None = None
        self._alerts: dict[str, str] = {}
        self._unknown_replay: list[tuple[int, int]] = []
        self._unsendable = 0
        self._counts = {"published": 0, "acked": 0, "applied": 0, "rejected": 0}
        self._lock = threading.Lock()
        # index=False: no embedding model (tests); the indexer loads it on first use
        self.index_later = (IndexLater(node.duck, node.indexer, busy=lambda: self.applier.busy())
                            if index else None)
        self.applier = DownApplier(
            tenant_id=identity.tenant_id, ledger=self.ledger, writer=node.writer,
            feedback=lambda fb: node.feedback.store(fb, outbox=False), clock=self.clock,
            on_applied=self._applied, batch=self.options.apply_batch,
            index=self.index_later)

    @classmethod
    def from_settings(cls, node: SyncHost, identity: NodeIdentity | None = None,
                      mqtt_url: str | None = None) -> SyncAgent | None:
        """The agent ``rae-edge serve`` runs: identity from ``sync.enroll_file``, broker
        from ``sync.mqtt_url`` (or the identity's). ``None`` when sync is off."""
        from rae_sync.transport import PahoTransport

        s = node.settings.sync
        if identity is None:
            if not node.settings.sync_on:
                return None
            if s.enroll_file is None:
                if s.mqtt_url is not None:
                    log.warning("sync: sync.mqtt_url is set but sync.enroll_file is not: sync "
                                "stays off until the node has an identity (rae-central "
                                "enroll); the outbox keeps every row meanwhile")
                return None
            identity = NodeIdentity.load(s.enroll_file)
        url = mqtt_url or s.mqtt_url or identity.mqtt_url
        if url is None:
            return None
        # the client id the broker binds to this node's credentials (dynamic security)
        transport = PahoTransport.from_url(
            url, client_id=identity.mqtt_client_id, tls=identity.tls,
            username=identity.mqtt_username if identity.mqtt_password else None,
            password=identity.mqtt_password)
        opts = SyncOptions(batch_size=s.batch_size, outbox_limit=s.outbox_limit)
        return cls(node, identity, transport, opts)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Subscribes to the node's down topics, connects (in the background, retrying)
        and starts the agent thread. Returns at once, also when the broker is away."""
        if self._thread is not None:
            return
        t, s, n = self.identity.node
        if self.index_later is not None:
            self.index_later.start()
        self.applier.start()
        # subscribe before connecting: a kept session delivers its backlog right away
        self.transport.subscribe(node_down_filter(t, s, n), self._on_down)
        self.transport.add_connection_listener(self._on_connection)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rae-sync-agent", daemon=True)
        self._thread.start()
        self.transport.connect(timeout=None)

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the thread and disconnects; unacked rows stay in the outbox."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.transport.close()
        self.applier.stop(timeout)
        if self.index_later is not None:
            self.index_later.stop(timeout)

    def notify(self) -> None:
        """Wakes the agent at once (e.g. after a write that queued a row)."""
        self._wake.set()

    @property
    def stats(self) -> SyncStats:
        st = self.ledger.state()
        last_ack = st.get("last_ack_at")
        with self._lock:
            counts = dict(self._counts)
            alerts = tuple(self._alerts.values())
        return SyncStats(
            connected=self.transport.connected, outbox_depth=self.node.duck.outbox_depth(),
            outbox_limit=self.options.outbox_limit, last_seq=int(st.get("last_seq", 0)),
            last_acked_seq=int(st.get("last_acked_seq", 0)),
            last_ack_at=datetime.fromisoformat(last_ack) if last_ack else None,
            unacked=self.ledger.unacked_count(), alerts=alerts, **counts)

    # -- sealing ------------------------------------------------------------------------
    def _seal(self, msg: Message, seq: int, hlc: Hlc) -> tuple[Envelope, bytes]:
        t, s, n = self.identity.node
        return seal_encoded(msg, key=self.identity.private_key, tenant_id=t, site_id=s,
                            node_id=n, direction=Direction.UP, seq=seq, hlc=hlc)

    def _topic(self, sealed: Sealed) -> str:
        return up_topic(*self.identity.node, sealed.type)

    # -- the loop -----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self._step()
            except Exception:
                log.exception("sync step failed; retrying")
                busy = False
            if not busy:
                try:
                    self._await_inflight()
                except Exception:
                    log.exception("sync: waiting for PUBACKs failed")
                self._wake.wait(self.options.poll_s)
                self._wake.clear()

    def _step(self) -> bool:
        """One round; True when there is more to do at once."""
        o = self.options
        self._drain_work()
        unacked = self.ledger.unacked_count()
        fresh: list[Sealed] = []
        if unacked < o.window:
            fresh, problems = self.ledger.seal_outbox(
                min(o.batch_size, o.window - unacked), self.clock, self._seal)
            for p in problems:
                log.error("sync: %s (kept in sync_unsendable)", p)
            if problems:
                with self._lock:
                    self._counts["rejected"] += len(problems)
                    self._unsendable += len(problems)
                    self._alerts["unsendable"] = (
                        f"{self._unsendable} outbox rows could not be sent (kept in "
                        f"sync_unsendable), the latest: {problems[-1]}")
        now = time.monotonic()
        if now - self._last_bound_check >= 1.0:  # a count(*) costs: not every step
            self._last_bound_check = now
            self._check_bound()
        published = 0
        if self.transport.connected:
            every = o.status_busy_s if self._reported_backlog else o.status_every_s
            if now - self._last_status >= every:
                self._last_status = now
                self._send_status()
            if unacked and now - self._last_progress >= o.resend_after_s:
                log.info("sync: no ack for %.0fs; re-sending %d unacked", o.resend_after_s,
                         unacked)
                self._sent_upto = 0
                self._last_progress = now
            # older unacked first (after a reconnect or a resend), then what was just sealed
            # (published straight from memory, not read back)
            lo = fresh[0].seq if fresh else None
            if lo is None or self._sent_upto < lo - 1:
                older = [s for s in self.ledger.unacked(o.batch_size, after_seq=self._sent_upto)
                         if lo is None or s.seq < lo]
                published += self._publish(older)
            if fresh and self._sent_upto >= fresh[0].seq - 1:
                published += self._publish(fresh)
        if now - self._last_prune >= 5.0:
            self._last_prune = now
            self.ledger.prune(o.retain_acked)
        return len(fresh) == o.batch_size or published >= o.batch_size

    def _publish(self, batch: list[Sealed]) -> int:
        """Sends a batch without waiting: its PUBACKs are awaited when the next batch goes
        (or the loop idles), so sealing the next batch overlaps the network round trip."""
        if not batch:
            return 0
        self._await_inflight()
        try:
            handles = [self.transport.publish_async(self._topic(s), s.data) for s in batch]
        except TransportError as e:
            log.info("sync: publish interrupted (%s); will re-send", e)
            self._sent_upto = min(self._sent_upto, batch[0].seq - 1)
            return 0
        self._inflight = (batch, handles)
        self._sent_upto = max(self._sent_upto, batch[-1].seq)
        return len(batch)

    def _await_inflight(self) -> None:
        if self._inflight is None:
            return
        batch, handles = self._inflight
        self._inflight = None
        try:
            for h in handles:
                h.wait(self.options.publish_timeout_s)
        except TransportError as e:
            log.info("sync: publish interrupted (%s); will re-send", e)
            self._sent_upto = min(self._sent_upto, batch[0].seq - 1)
            return
        with self._lock:
            self._counts["published"] += len(batch)

    def _send_status(self) -> None:
        st = self.stats
        msg = NodeStatusMsg(
            outbox_depth=st.outbox_depth, outbox_limit=st.outbox_limit, last_seq=st.last_seq,
            last_acked_seq=st.last_acked_seq, oldest_unacked_at=self.ledger.oldest_unacked_at(),
            unknown_replay=tuple(self._unknown_replay), alerts=st.alerts)
        self.ledger.seal_message(msg, self.clock, self._seal)
        self._unknown_replay.clear()
        # a backlog shown at central is re-reported soon, so the console sees it drain
        self._reported_backlog = st.outbox_depth > 0 or st.unacked > 0

    def _check_bound(self) -> None:
        depth = self.node.duck.outbox_depth()
        limit = self.options.outbox_limit
        with self._lock:
            if depth > limit:
                if "outbox" not in self._alerts:
                    log.error("sync: outbox holds %d rows, above its limit %d: nothing is "
                              "dropped; is central reachable?", depth, limit)
                self._alerts["outbox"] = f"outbox above limit: {depth} > {limit}"
            else:
                self._alerts.pop("outbox", None)

    def _drain_work(self) -> None:
        acks: list[tuple[str, int]] = []
        while True:
            try:
                kind, item = self._work.get_nowait()
            except queue.Empty:
                break
            if kind == "replay":
                self._replay(item)
            elif kind == "ack_up":
                acks += item
            elif kind == "reconnected":
                self._sent_upto = 0
                self._last_status = 0.0
                # "send me what I have not applied": central replays from its own log
                cursor, applied = self.ledger.down_position()
                self.ledger.seal_message(ResumeMsg(cursor=cursor, applied=applied),
                                         self.clock, self._seal)
        for i in range(0, len(acks), ACK_MAX):  # a catch-up's acks: a few messages
            part = acks[i:i + ACK_MAX]
            self.ledger.seal_message(AckMsg(message_ids=tuple(m for m, _ in part),
                                            seqs=tuple(s for _, s in part)),
                                     self.clock, self._seal)
            self.ledger.advance_down([s for _, s in part])

    def _replay(self, req: ReplayRequestMsg) -> None:
        retained = self.ledger.retained_range()
        if retained is None or req.from_seq < retained[0]:
            gone_to = req.to_seq if retained is None else min(req.to_seq, retained[0] - 1)
            self._unknown_replay.append((req.from_seq, gone_to))
            log.warning("sync: replay of seq %d..%d asked, seqs up to %d are no longer kept",
                        req.from_seq, req.to_seq, gone_to)
            self._last_status = 0.0  # tell central in the next status
        start = req.from_seq
        while start <= req.to_seq and not self._stop.is_set():
            batch = self.ledger.in_range(start, req.to_seq, self.options.batch_size)
            if not batch or not self._publish(batch):
                return
            start = batch[-1].seq + 1

    # -- what comes down ------------------------------------------------------------------
    def _on_connection(self, up: bool) -> None:
        if up:
            self._work.put(("reconnected", None))
            self._wake.set()

    def _on_down(self, msg: InboundMessage) -> None:
        """Never raises: a message that cannot be handled is set aside with why, and
        returning lets the transport ack it to the broker (an unacked one would hold a
        slot of the in-flight window for good)."""
        try:
            self._handle_down(msg)
        except Exception as e:  # a bug must not stall the stream either
            log.exception("sync: cannot handle a message on %s", msg.topic)
            self._refuse(None, msg, f"internal: {type(e).__name__}: {e}")

    def _refuse(self, message_id: str | None, msg: InboundMessage, reason: str) -> None:
        log.warning("sync: set aside a message on %s: %s", msg.topic, reason)
        with self._lock:
            self._counts["rejected"] += 1
        try:
            self.ledger.set_aside(message_id, msg.topic, reason, msg.payload)
        except Exception:
            log.exception("sync: could not set aside a message on %s", msg.topic)

    def _handle_down(self, msg: InboundMessage) -> None:
        try:
            got = open_envelope(msg.payload, self.identity.central_public_key, topic=msg.topic)
        except VerificationError as e:
            self._refuse(None, msg, f"{e.reason}: {e}")
            return
        env, m = got.envelope, got.message
        if env.node != self.identity.node or env.direction is not Direction.DOWN:
            log.warning("sync: dropped %s on %s: not addressed to this node", env.message_id,
                        msg.topic)
            return
        if isinstance(m, CorrectionMsg):
            # A correction's stamps order facts at every plant: refused when further ahead
            # than the skew of the later of this node's wall clock and its hybrid clock.
            # The hybrid clock follows central's answers to this node (acks, below), so a
            # node whose wall clock was set back still takes the other plants' stamps.
            wall = time.time_ns() // 1_000_000
            try:
                check_ordering(env, m, max_ahead_s=self.options.max_clock_skew_s,
                               now_ms=max(wall, self.clock.last.ms))
            except ClockSkew as e:
                # not marked applied, not acked up: central keeps it and sends it again
                self._refuse(None, msg, f"{e.reason}: {e}")
                return
        self.clock.update(env.hlc)  # central's own stamp (it checked the senders')
        if isinstance(m, AckMsg):
            n = self.ledger.ack(m.seqs, m.message_ids)
            if n:
                self._last_progress = time.monotonic()
                with self._lock:
                    self._counts["acked"] += n
                self._wake.set()
        elif isinstance(m, ReplayRequestMsg):
            self._work.put(("replay", m))
            self._wake.set()
        elif isinstance(m, CorrectionMsg | FeedbackMsg):
            # applied in batches off this thread, acked up once applied (see DownApplier)
            self.applier.put(env, m)
        else:
            log.warning("sync: ignored a %s message on %s", env.type, msg.topic)

    def _applied(self, items: list[Applied], stored: int) -> None:
        """From the applier, once a batch is applied: ack it up (from the agent thread)."""
        with self._lock:
            self._counts["applied"] += stored
        self._work.put(("ack_up", items))
        self._wake.set()
