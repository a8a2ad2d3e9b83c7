"""The transport interface the sync agent and central's workers talk to.

A transport is one MQTT 5 client with a persistent session: QoS 1, ``publish`` returns
once the broker has acknowledged (PUBACK), handlers run on the transport's own thread
and a message is acknowledged to the broker only after its handler returned (so a handler
that stored the message on disk makes the ack mean "on disk"). A handler that raises
leaves the message unacknowledged: the broker delivers it again on the next connection.
So does a message no handler matched: call ``subscribe`` before ``connect``, or a kept
session's backlog arrives before there is anyone to take it.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from dataclasses import dataclass

from rae_sync.errors import TransportError

log = logging.getLogger("rae_sync.transport")

DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600  # a week of outage before the broker forgets us


@dataclass(frozen=True)
class InboundMessage:
    """One message as delivered to a handler."""

    topic: str
    payload: bytes
    qos: int = 1
    #: the broker says it may have delivered this before (a redelivery)
    dup: bool = False


Handler = Callable[[InboundMessage], None]
#: called with ``True`` on (re)connect and ``False`` when the connection is lost
ConnectionListener = Callable[[bool], None]


class PublishHandle(abc.ABC):
    """A publish in flight; :meth:`wait` returns once the broker acknowledged it."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> None:
        """Blocks until PUBACK; ``TransportError`` on refusal or timeout."""


class Transport(abc.ABC):
    """One MQTT 5 client (see the module docstring for the guarantees)."""

    client_id: str

    @abc.abstractmethod
    def connect(self, timeout: float | None = 10.0) -> None:
        """Starts the client; keeps reconnecting (with backoff) until :meth:`close`.

        Waits up to ``timeout`` seconds for the first connection (``None``: don't wait);
        ``TransportError`` if it did not come in time (the client keeps trying).
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Disconnects for good (the broker keeps the session for its expiry)."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """Whether the client has a live connection now."""

    @abc.abstractmethod
    def publish_async(self, topic: str, payload: bytes, qos: int = 1) -> PublishHandle:
        """Sends a message; ``TransportError`` at once when not connected."""

    def publish(self, topic: str, payload: bytes, qos: int = 1,
                timeout: float | None = 10.0) -> None:
        """Sends a message and waits for the broker's PUBACK."""
        self.publish_async(topic, payload, qos).wait(timeout)

    def publish_many(self, items: list[tuple[str, bytes]], qos: int = 1,
                     timeout: float | None = 30.0) -> None:
        """Sends several messages, then waits for every PUBACK (pipelined)."""
        handles = [self.publish_async(t, p, qos) for t, p in items]
        for h in handles:
            h.wait(timeout)

    @abc.abstractmethod
    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Routes messages matching ``topic_filter`` (``+``, ``#``, ``$share/group/...``)
        to ``handler``; kept across reconnects."""

    @abc.abstractmethod
    def add_connection_listener(self, listener: ConnectionListener) -> None:
        """Calls ``listener(connected)`` on every connect and disconnect."""

    def __enter__(self) -> Transport:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic-filter matching: ``+`` one level, ``#`` the rest (also the parent);
    wildcards at the first level do not match topics starting with ``$``."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) < 3:
            return False
        topic_filter = parts[2]
    f = topic_filter.split("/")
    t = topic.split("/")
    if topic.startswith("$") and f[0] in ("+", "#"):
        return False
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(f) == len(t)


def check_filter(topic_filter: str) -> tuple[str | None, str]:
    """Validates a filter; returns (share group or None, the filter proper)."""
    group: str | None = None
    proper = topic_filter
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) < 3 or not parts[1] or any(c in parts[1] for c in "+#"):
            raise TransportError(f"invalid shared subscription {topic_filter!r}")
        group, proper = parts[1], parts[2]
    levels = proper.split("/")
    if not proper:
        raise TransportError("empty topic filter")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise TransportError(f"invalid topic filter {topic_filter!r}: '#' must be last")
        if "+" in level and level != "+":
            raise TransportError(f"invalid topic filter {topic_filter!r}: '+' fills a level")
    return group, proper


def check_topic(topic: str) -> str:
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise TransportError(f"invalid topic to publish to: {topic!r}")
    return topic


def run_handler(handler: Handler, msg: InboundMessage) -> bool:
    """Runs a handler; a raise is logged with the topic (never kills the loop) and
    reported as False so the message is not acknowledged."""
    try:
        handler(msg)
    except Exception:
        log.exception("handler for %s failed: message left unacknowledged", msg.topic)
        return False
    return True
