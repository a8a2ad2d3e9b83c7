"""An in-process MQTT 5 broker and its client transport: the real thing for one process
(tests, a single-box demo), with the behaviour the sync relies on.

- topic filters with ``+`` and ``#``; ``$share/{group}/{filter}`` gives each message to one
  member of the group (round robin over connected members);
- QoS 1 with persistent sessions: while a client is away (``clean_start=False`` and a
  non-zero session expiry) its messages queue and arrive when it reconnects; a message
  whose handler raised, or that was in flight at a disconnect, is delivered again;
- :meth:`MemoryBroker.stop` / :meth:`MemoryBroker.start` act like a broker restart with
  persistence: connections drop, sessions survive, clients reconnect by themselves.

Handlers run on one delivery thread per client, as paho runs them on its network thread.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import deque
from dataclasses import dataclass, field

from rae_sync.errors import TransportError
from rae_sync.transport.base import (
    ConnectionListener,
    Handler,
    InboundMessage,
    PublishHandle,
    Transport,
    check_filter,
    check_topic,
    log,
    run_handler,
    topic_matches,
)


@dataclass
class _Sub:
    filter: str
    group: str | None
    proper: str


@dataclass
class _Session:
    client_id: str
    expiry_s: int
    subs: dict[str, _Sub] = field(default_factory=dict)
    pending: deque[InboundMessage] = field(default_factory=deque)
    online: MemoryTransport | None = None


class MemoryBroker:
    """An in-process broker (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._sessions: dict[str, _Session] = {}
        self._clients: set[MemoryTransport] = set()  # every not-closed client
        self._running = True
        self._rr = itertools.count()
        self.delivered = 0

    @property
    def running(self) -> bool:
        return self._running

    def stop(self) -> None:
        """Drops every connection; sessions (and queued messages) survive."""
        with self._lock:
            self._running = False
            online = [s.online for s in self._sessions.values() if s.online is not None]
        for client in online:
            self._disconnect(client)

    def start(self) -> None:
        """Accepts connections again; every client that was not closed reconnects."""
        with self._lock:
            self._running = True
            clients = list(self._clients)
        for c in clients:
            self._connect(c)

    # -- used by MemoryTransport ----------------------------------------------------
    def _register(self, client: MemoryTransport) -> None:
        with self._lock:
            self._clients.add(client)
        self._connect(client)

    def _unregister(self, client: MemoryTransport) -> None:
        with self._lock:
            self._clients.discard(client)
        self._disconnect(client)

    def _connect(self, client: MemoryTransport) -> None:
        with self._lock:
            if not self._running or client._online:
                return
            old = self._sessions.get(client.client_id)
            if old is not None and old.online is not None and old.online is not client:
                # MQTT: a second connection with the same client id takes over the session
                self._disconnect(old.online)
            if old is None or client.clean_start:
                old = _Session(client.client_id, client.session_expiry_s)
                self._sessions[client.client_id] = old
            old.expiry_s = client.session_expiry_s
            old.online = client
            client._online = True
            for f in client._filters:
                self._add_sub(old, f)
            backlog = list(old.pending)
            old.pending.clear()
            client._events.put(("conn", True))
            for m in backlog:
                client._events.put(("msg", m))

    def _disconnect(self, client: MemoryTransport) -> None:
        with self._lock:
            if not client._online:
                return
            client._online = False
            session = self._sessions.get(client.client_id)
            if session is not None and session.online is client:
                session.online = None
                if session.expiry_s == 0:
                    del self._sessions[client.client_id]
                    session = None
            client._epoch += 1
            # what was queued to the client but not yet handled goes back to its session
            leftovers: list[InboundMessage] = []
            while True:
                try:
                    kind, item = client._events.get_nowait()
                except queue.Empty:
                    break
                if kind == "msg" and isinstance(item, InboundMessage):
                    leftovers.append(item)
            if session is not None:
                session.pending.extendleft(reversed(
                    [InboundMessage(m.topic, m.payload, m.qos, True) for m in leftovers]))
            client._events.put(("conn", False))

    def _add_sub(self, session: _Session, topic_filter: str) -> None:
        group, proper = check_filter(topic_filter)
        session.subs[topic_filter] = _Sub(topic_filter, group, proper)

    def _subscribe(self, client: MemoryTransport, topic_filter: str) -> None:
        with self._lock:
            session = self._sessions.get(client.client_id)
            if session is not None and session.online is client:
                self._add_sub(session, topic_filter)

    def _requeue(self, client: MemoryTransport, msg: InboundMessage) -> None:
        """A handler failed: keep the message for the next connection."""
        with self._lock:
            session = self._sessions.get(client.client_id)
            if session is not None:
                session.pending.appendleft(InboundMessage(msg.topic, msg.payload, msg.qos, True))

    def _publish(self, client: MemoryTransport, topic: str, payload: bytes, qos: int) -> None:
        with self._lock:
            if not self._running or not client._online:
                raise TransportError(f"{client.client_id}: not connected to the broker")
            plain: list[_Session] = []
            groups: dict[str, list[_Session]] = {}
            for s in self._sessions.values():
                matched_plain = False
                for sub in s.subs.values():
                    if not topic_matches(sub.proper, topic):
                        continue
                    if sub.group is None:
                        matched_plain = True
                    elif s not in groups.setdefault(sub.group, []):
                        groups[sub.group].append(s)
                if matched_plain:
                    plain.append(s)
            targets = list(plain)
            for members in groups.values():
                live = [m for m in members if m.online is not None] or members
                targets.append(live[next(self._rr) % len(live)])
            for s in targets:
                msg = InboundMessage(topic, bytes(payload), qos)
                if s.online is not None:
                    s.online._events.put(("msg", msg))
                elif qos > 0:
                    s.pending.append(msg)
                self.delivered += 1


class _Done(PublishHandle):
    def wait(self, timeout: float | None = None) -> None:
        return None


class MemoryTransport(Transport):
    """A client of a :class:`MemoryBroker` (see the module docstring)."""

    def __init__(self, broker: MemoryBroker, client_id: str, *, clean_start: bool = False,
                 session_expiry_s: int = 3600) -> None:
        self.broker = broker
        self.client_id = client_id
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self._filters: list[str] = []
        self._routes: list[tuple[str, Handler]] = []
        self._listeners: list[ConnectionListener] = []
        self._events: queue.Queue[tuple[str, object]] = queue.Queue()
        self._online = False
        self._epoch = 0
        self._closed = threading.Event()
        self._connected_evt = threading.Event()
        self._thread: threading.Thread | None = None
        self._route_lock = threading.Lock()

    def connect(self, timeout: float | None = 10.0) -> None:
        if self._thread is None:
            self._closed.clear()
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"mqtt-mem-{self.client_id}")
            self._thread.start()
        self.broker._register(self)
        if timeout is not None and not self._connected_evt.wait(timeout):
            raise TransportError(f"{self.client_id}: no connection in {timeout}s")

    def close(self) -> None:
        self.broker._unregister(self)
        self._closed.set()
        self._events.put(("stop", None))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._thread = None

    @property
    def connected(self) -> bool:
        return self._online and self._connected_evt.is_set()

    def publish_async(self, topic: str, payload: bytes, qos: int = 1) -> PublishHandle:
        self.broker._publish(self, check_topic(topic), payload, qos)
        return _Done()

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        check_filter(topic_filter)
        with self._route_lock:
            self._routes.append((topic_filter, handler))
            if topic_filter not in self._filters:
                self._filters.append(topic_filter)
        self.broker._subscribe(self, topic_filter)

    def add_connection_listener(self, listener: ConnectionListener) -> None:
        self._listeners.append(listener)

    def _run(self) -> None:
        while not self._closed.is_set():
            kind, item = self._events.get()
            if kind == "stop":
                return
            if kind == "conn":
                up = bool(item)
                if up:
                    self._connected_evt.set()
                else:
                    self._connected_evt.clear()
                for listener in list(self._listeners):
                    try:
                        listener(up)
                    except Exception:
                        log.exception("connection listener of %s failed", self.client_id)
                continue
            assert isinstance(item, InboundMessage)
            with self._route_lock:
                handlers = [h for f, h in self._routes if topic_matches(f, item.topic)]
            ok = bool(handlers) and all([run_handler(h, item) for h in handlers])
            if not ok:
                self.broker._requeue(self, item)
