"""The push bus: proactive messages for tablets watching machines.

Any thread publishes (the API, the ingest job, the transcription worker, the sync agent):
:meth:`PushBus.publish` stores the message in DuckDB (``push_messages``; its ``seq`` is the
cursor) and hands it to every live subscription of that tenant and machine. A WebSocket
subscribes with :meth:`PushBus.subscribe` from the event loop and iterates
:meth:`Subscription.messages`: first what it missed since its cursor (read back from
DuckDB), then live messages, each exactly once and in cursor order.

A subscription watches machines, production lines, or both (a message matches either).
A line is resolved when a message is published (live) or read back (replay), from the
machines table as it is then: a machine added to the line later is heard without a
reconnect, and a machine moved to another line leaves it.

Why it cannot lose or repeat a message: the insert and the hand-over to subscribers happen
under one lock, so subscriber queues receive messages in cursor order; a subscription
registers before it reads its backlog and skips anything at or below the last cursor it
yielded. A subscriber that falls behind (its bounded queue fills) is not blocked on: it is
marked lagging and re-reads the gap from DuckDB.

Message types: one typed class each in :mod:`rae_edge.push_kinds` (``briefing``: a machine
was scanned; ``incident``: a new incident or error-log row, with the most similar past
incident and its fix; ``correction``: typed, voiced or from central; ``voice_note``: a
transcript is ready; ``alarm``: a machine raised or cleared an error code over OPC UA or
Sparkplug B, :mod:`rae_edge.alarms`), published with :meth:`PushBus.send`. The wire form is
:meth:`PushMessage.to_json`: ``{"cursor", "type", "machine_id", "at", "data"}``.

Every delivery is on record: a subscription made for a reader (:class:`Reader`) gets a live
message only with its audit entry (the memory ids it holds) committed. The bus writes the
message and the entries of every reader it reaches in one transaction, so ten tablets
watching a machine cost the one disk flush the message costs anyway, not ten more racing
the writer's later steps; if the entries cannot be written, the message is not stored
either (the publisher gets the error). What a subscription reads back from DuckDB and was
stored before it registered (its backlog) is recorded by :meth:`Subscription.messages`
before it yields; if that fails the subscription raises (the socket closes).

Owed pushes: a write stores the pushes it owes (:meth:`PushBus.hold`) in its own
transaction under one token, and the messages that pay them carry it (``owed``); what a
crash or a failed push left unpaid is sent when the node starts (:meth:`PushBus.send_owed`). So a
fact acknowledged to its writer reaches the tablets exactly once, through any crash.

Retention: messages older than ``retention_days`` or beyond the newest ``retention_rows``
are trimmed now and then; a tablet resuming from a trimmed cursor is told so (``gap``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from rae_edge.audit import AuditLog, AuditRequest, memory_ids
from rae_edge.errors import InvalidInputError
from rae_edge.push_kinds import PUSH_TYPES, PushBody
from rae_edge.store.duck import DuckStore

log = logging.getLogger(__name__)

# the declared kinds (rae_edge.push_kinds) and ``alarm`` (rae_edge.alarms.push)
TYPES = (*PUSH_TYPES, "alarm")
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_.]{0,39}$")
TRIM_EVERY = 500  # publishes between two retention passes
REPLAY_BATCH = 500
SOON_WINDOW_S = 0.1  # publish_soon: how long the writer gathers messages per transaction
SOON_BATCH = 200  # and at most how many


@dataclass(frozen=True)
class PushMessage:
    """One stored message; ``cursor`` grows strictly across the node."""

    cursor: int
    tenant_id: str
    machine_id: str
    type: str
    payload: dict[str, Any]
    at: datetime

    def to_json(self) -> dict[str, Any]:
        """The wire form (the tenant is implied by the token and left out)."""
        return {"cursor": self.cursor, "type": self.type, "machine_id": self.machine_id,
                "at": self.at.isoformat(), "data": self.payload}


@dataclass(frozen=True)
class Reader:
    """Who a subscription delivers to, as the audit log names them."""

    tenant_id: str
    actor: str
    action: str  # e.g. "WS /api/v1/push"


def _request(reader: Reader, resource: str, msgs: Sequence[PushMessage]) -> AuditRequest:
    ids = [i for m in msgs for i in memory_ids(m.to_json())]
    return AuditRequest(reader.tenant_id, reader.actor, reader.action, resource, ids)


@dataclass(eq=False)
class Subscription:
    """A live subscription, owned by one event loop (one WebSocket)."""

    bus: PushBus
    tenant_id: str
    machine_ids: frozenset[str]  # with ``lines`` empty: every machine of the tenant
    last: int  # the cursor of the last message yielded (or the start cursor)
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[PushMessage]
    gap: bool = False  # the start cursor was older than what retention kept
    lines: frozenset[str] = frozenset()  # production lines watched (machines' ``line``)
    reader: Reader | None = None  # who reads it: every delivery is audited first
    registered_at: int = 0  # the head when it registered: later messages the bus records
    _lagging: bool = field(default=False, repr=False)
    _closed: bool = field(default=False, repr=False)

    def wants(self, tenant_id: str, machine_id: str, line: str | None = None) -> bool:
        if tenant_id != self.tenant_id:
            return False
        if not self.machine_ids and not self.lines:
            return True
        return machine_id in self.machine_ids or (line is not None and line in self.lines)

    def _deliver(self, msg: PushMessage) -> None:  # runs on the subscription's loop
        if self._closed:
            return
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self._lagging = True  # re-read from DuckDB; the publisher never waits

    async def _record_backlog(self, batch: list[PushMessage]) -> None:
        """Records what was stored before it registered (the bus records the rest)."""
        old = [m for m in batch if m.cursor <= self.registered_at]
        if self.reader is not None and old and self.bus.audit is not None:
            request = _request(self.reader, f"replay after cursor {self.last}: "
                               f"{len(old)} messages", old)
            await asyncio.to_thread(self.bus.audit.record_many, [request])

    async def messages(self) -> AsyncIterator[PushMessage]:
        """Missed messages since the start cursor, then live ones; each once, in order."""
        await asyncio.sleep(0)
        self._lagging = True  # the backlog is read like a lag
        while not self._closed:
            if self._lagging:
                self._lagging = False
                while not self.queue.empty():  # everything queued is also in DuckDB
                    self.queue.get_nowait()
                while True:
                    batch = await asyncio.to_thread(
                        self.bus.since, self.tenant_id, self.machine_ids, self.last,
                        REPLAY_BATCH, self.lines)
                    await self._record_backlog(batch)
                    for msg in batch:
                        self.last = msg.cursor
                        yield msg
                    if len(batch) < REPLAY_BATCH:
                        break
                continue
            msg = await self.queue.get()
            if msg.cursor <= self.last:
                continue  # already yielded from the backlog
            self.last = msg.cursor
            yield msg

    def close(self) -> None:
        self._closed = True
        self.bus._unsubscribe(self)


class PushBus:
    """Persisted publish/subscribe of push messages per tenant and machine."""

    def __init__(self, duck: DuckStore, *, audit: AuditLog | None = None,
                 retention_days: float = 7.0, retention_rows: int = 200_000,
                 queue_size: int = 1000) -> None:
        self.duck = duck
        self.audit = audit  # where subscriptions made for a reader have deliveries recorded
        self.retention = timedelta(days=retention_days)
        self.retention_rows = retention_rows
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self._since_trim = 0
        self._soon: queue.Queue[tuple[str, str, str, dict[str, Any]]] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._start_lock = threading.Lock()  # starts the writer thread once

    # -- publishing (any thread) ---------------------------------------------------------
    def publish(self, tenant_id: str, machine_id: str, type: str,
                payload: dict[str, Any]) -> int:
        """Stores a message and hands it to live subscriptions; returns its cursor.

        Returns once the message is on disk. Thread-safe; never blocks on a slow tablet.
        """
        if not _TYPE_RE.match(type):
            raise InvalidInputError(f"invalid push message type {type!r}")
        return self._publish_many([(tenant_id, machine_id, type, payload)])[0]

    def _publish_many(self, items: Sequence[tuple[str, str, str, dict[str, Any]]],
                      owed: str | None = None) -> list[int]:
        """Stores messages and the audit entries of their deliveries to readers in one
        transaction (one disk flush), then hands each over in cursor order; returns their
        cursors. If the entries cannot be written, nothing is stored or handed over.
        ``owed``: the token of the owed pushes (:meth:`hold`) these messages pay."""
        bodies = [json.dumps(payload, default=_json_default) for *_, payload in items]
        at = datetime.now(UTC)
        values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(items))
        params: list[Any] = []
        for (tenant_id, machine_id, type, _), body in zip(items, bodies, strict=True):
            params += [tenant_id, machine_id, type, body, at, owed]
        with self._lock:
            # Who gets what is known before the insert (tenant, machine, its line): the
            # deliveries' audit entries then go in the same transaction as the messages.
            by_line = any(sub.lines for sub in self._subs)
            targets = {(t, m): [sub for sub in self._subs if sub.wants(
                t, m, self._line_of(t, m) if by_line else None)] for t, m, *_ in items}
            readers = any(sub.reader is not None for subs in targets.values() for sub in subs)
            appending = (self.audit.appending() if readers and self.audit is not None
                         else contextlib.nullcontext())
            with appending as app, self.duck.transaction() as cur:
                rows = cur.execute(
                    "INSERT INTO push_messages (tenant_id, machine_id, type, payload, created_at,"
                    f" owed) VALUES {values} RETURNING seq, tenant_id, machine_id, type, payload",
                    params).fetchall()
                # Built from what was stored (each cursor with its own row), in cursor order.
                msgs = sorted((PushMessage(int(seq), str(t), str(m), str(ty), json.loads(body),
                                           at) for seq, t, m, ty, body in rows),
                              key=lambda m: m.cursor)
                deliveries = [(sub, msg) for msg in msgs
                              for sub in targets[(msg.tenant_id, msg.machine_id)]]
                if app is not None:
                    app.add(cur, [_request(sub.reader, f"push {msg.type} cursor {msg.cursor}",
                                           [msg])
                                  for sub, msg in deliveries if sub.reader is not None])
            for sub, msg in deliveries:
                try:
                    sub.loop.call_soon_threadsafe(sub._deliver, msg)
                except RuntimeError:  # its loop is closed: the socket is gone
                    if sub in self._subs:
                        self._subs.remove(sub)
            self._since_trim += len(msgs)
            trim = self._since_trim >= TRIM_EVERY
            if trim:
                self._since_trim = 0
        if trim:
            self.trim()
        return [m.cursor for m in msgs]

    def _line_of(self, tenant_id: str, machine_id: str) -> str | None:
        # The store's per-tenant machine cache (dropped on every upsert): a dict lookup.
        machine = self.duck.get_machine(tenant_id, machine_id)
        return machine.line if machine is not None else None

    def send(self, tenant_id: str, body: PushBody) -> int:
        """Publishes a typed message (:mod:`rae_edge.push_kinds`); returns its cursor."""
        return self.publish(tenant_id, body.machine_id, body.TYPE, body.data())

    def send_many(self, items: Sequence[tuple[str, PushBody]],
                  owed: str | None = None) -> list[int]:
        """Publishes typed messages ``(tenant, body)`` in one transaction (one disk flush,
        as a bulk write's pushes need); returns their cursors. ``owed``: the token
        :meth:`hold` gave for them (they pay those owed pushes)."""
        if not items:
            return []
        return self._publish_many([(t, b.machine_id, b.TYPE, b.data()) for t, b in items],
                                  owed)

    # -- owed pushes: what a write promised its tablets, across a crash ------------------
    @staticmethod
    def hold(cur: duckdb.DuckDBPyConnection, items: Sequence[tuple[str, PushBody]],
             ) -> str | None:
        """Records, in the caller's transaction (a write's store step), the pushes that
        write owes, under one token it returns, for :meth:`send_many`'s ``owed``. A crash
        between the write's commit and its push leaves them unpaid: :meth:`send_owed`
        sends them when the node starts again, so a stored fact is never unannounced.
        (One insert in a transaction the write makes anyway, and no delete: paid ones are
        dropped with the retention pass.)"""
        if not items:
            return None
        token = uuid.uuid4().hex
        values = ", ".join(["(?, ?, ?, ?, ?)"] * len(items))
        params: list[Any] = []
        for tenant_id, body in items:
            params += [token, tenant_id, body.machine_id, body.TYPE,
                       json.dumps(body.data(), default=_json_default)]
        cur.execute("INSERT INTO push_pending (id, tenant_id, machine_id, type, payload) "
                    f"VALUES {values}", params)
        return token

    def send_owed(self) -> int:
        """Sends the pushes writes still owe (their node stopped between a write's commit
        and its push, or the push failed), oldest first; returns how many. Called when
        the node starts, before it serves: no write is between its two steps then."""
        rows = self.duck.query(
            "SELECT p.id, p.tenant_id, p.machine_id, p.type, p.payload FROM push_pending p "
            "WHERE NOT EXISTS (SELECT 1 FROM push_messages m WHERE m.owed = p.id) "
            "ORDER BY p.created_at, p.id")
        by_token: dict[str, list[tuple[str, str, str, dict[str, Any]]]] = {}
        for token, tenant_id, machine_id, type, payload in rows:
            by_token.setdefault(str(token), []).append(
                (str(tenant_id), str(machine_id), str(type), json.loads(payload)))
        sent = sum(len(self._publish_many(items, token)) for token, items in by_token.items())
        if sent:
            log.warning("push bus: sent %d push message(s) owed since before a restart",
                        sent)
        return sent

    def send_soon(self, tenant_id: str, body: PushBody) -> None:
        """:meth:`publish_soon` of a typed message."""
        self.publish_soon(tenant_id, body.machine_id, body.TYPE, body.data())

    def publish_soon(self, tenant_id: str, machine_id: str, type: str,
                     payload: dict[str, Any]) -> None:
        """Like :meth:`publish`, but returns at once: a background thread stores and
        delivers it (milliseconds later). For messages nobody must wait on, such as the
        briefing of a scan: the scan's answer does not wait for a disk flush. The thread
        gathers what arrives within :data:`SOON_WINDOW_S` into one transaction, so a burst
        of scans costs one flush, and its flush seldom sits in front of the scan's own
        audit commit."""
        if not _TYPE_RE.match(type):
            raise InvalidInputError(f"invalid push message type {type!r}")
        writer = self._writer  # checked outside the lock (held across each disk flush)
        if writer is None or not writer.is_alive():
            with self._start_lock:
                if self._writer is None or not self._writer.is_alive():
                    self._writer = threading.Thread(target=self._write_soon,
                                                    name="push-writer", daemon=True)
                    self._writer.start()
        self._soon.put((tenant_id, machine_id, type, payload))

    def _write_soon(self) -> None:
        while True:
            batch = [self._soon.get()]
            time.sleep(SOON_WINDOW_S)
            while len(batch) < SOON_BATCH:
                try:
                    batch.append(self._soon.get_nowait())
                except queue.Empty:
                    break
            try:
                self._publish_many(batch)
            except Exception:  # a closed store at shutdown, or a bad payload: log, go on
                log.exception("push bus: background publish of %d message(s) failed",
                              len(batch))
            finally:
                for _ in batch:
                    self._soon.task_done()

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until every :meth:`publish_soon` message is stored (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._soon.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    # -- reading ---------------------------------------------------------------------------
    def head(self, tenant_id: str) -> int:
        """The tenant's newest cursor (0 when it has none): where a new tablet starts."""
        rows = self.duck.query(
            "SELECT coalesce(max(seq), 0) FROM push_messages WHERE tenant_id = ?", [tenant_id])
        return int(rows[0][0])

    def since(self, tenant_id: str, machine_ids: Iterable[str], cursor: int,
              limit: int = REPLAY_BATCH, lines: Iterable[str] = ()) -> list[PushMessage]:
        """Stored messages after ``cursor`` for these machines and the machines now on
        these lines (every machine of the tenant when both are empty), oldest first."""
        sql = ("SELECT seq, tenant_id, machine_id, type, payload, created_at FROM push_messages"
               " WHERE tenant_id = ? AND seq > ?")
        params: list[Any] = [tenant_id, cursor]
        machines, on_lines = sorted(machine_ids), sorted(lines)
        if on_lines:
            sql += (" AND (list_contains(?, machine_id) OR machine_id IN (SELECT id FROM"
                    " machines WHERE tenant_id = ? AND list_contains(?, line)))")
            params += [machines, tenant_id, on_lines]
        elif machines:
            sql += " AND list_contains(?, machine_id)"
            params.append(machines)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        return [PushMessage(int(s), str(t), str(m), str(ty), json.loads(p), at)
                for s, t, m, ty, p, at in self.duck.query(sql, params)]

    def oldest(self) -> int:
        rows = self.duck.query("SELECT coalesce(min(seq), 0) FROM push_messages")
        return int(rows[0][0])

    # -- subscribing (event loop) ------------------------------------------------------
    async def subscribe(self, tenant_id: str, machine_ids: Sequence[str],
                        since_cursor: int | None = None,
                        lines: Sequence[str] = (), reader: Reader | None = None,
                        ) -> Subscription:
        """A subscription for the running event loop to these machines and the machines
        of these lines. With ``since_cursor`` it first replays what was stored after it;
        without, it starts at the tenant's head. With ``reader`` every message it yields
        is on record in the audit log first (the bus needs its ``audit``)."""
        if reader is not None and self.audit is None:
            raise ValueError("this push bus has no audit log: it cannot record a reader")
        loop = asyncio.get_running_loop()
        # Registration reads DuckDB under the publish lock: off the event loop.
        return await asyncio.to_thread(self._register, loop, tenant_id,
                                       frozenset(machine_ids), since_cursor, frozenset(lines),
                                       reader)

    def _register(self, loop: asyncio.AbstractEventLoop, tenant_id: str,
                  machine_ids: frozenset[str], since_cursor: int | None,
                  lines: frozenset[str] = frozenset(),
                  reader: Reader | None = None) -> Subscription:
        with self._lock:
            # Under the publish lock: every message after ``start`` reaches the queue.
            head = self.head(tenant_id)
            start = head if since_cursor is None else max(0, since_cursor)
            gap = since_cursor is not None and self.oldest() > start + 1
            if start > head:  # a cursor from a data folder since restored from a backup:
                start, gap = head, True  # resume at the head rather than wait past it
            sub = Subscription(self, tenant_id, machine_ids, start, loop,
                               asyncio.Queue(self.queue_size), gap=gap, lines=lines,
                               reader=reader, registered_at=head)
            self._subs.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    # -- retention -------------------------------------------------------------------------
    def trim(self) -> int:
        """Deletes messages past retention; returns how many."""
        cutoff = datetime.now(UTC) - self.retention
        with self.duck.transaction() as cur:
            # Owed pushes that were paid go first (one whose message is trimmed below must
            # not look unpaid); unpaid ones stay until the node sends them.
            cur.execute("DELETE FROM push_pending WHERE id IN "
                        "(SELECT owed FROM push_messages WHERE owed IS NOT NULL)")
            before = cur.execute("SELECT count(*) FROM push_messages").fetchone()
            cur.execute(
                "DELETE FROM push_messages WHERE created_at < ? OR seq <= "
                "(SELECT coalesce(max(seq), 0) FROM push_messages) - ?",
                [cutoff, self.retention_rows])
            after = cur.execute("SELECT count(*) FROM push_messages").fetchone()
        removed = int(before[0]) - int(after[0]) if before and after else 0
        if removed:
            log.info("push bus: trimmed %d messages past retention", removed)
        return removed


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
