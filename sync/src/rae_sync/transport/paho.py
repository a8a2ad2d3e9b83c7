"""The MQTT 5 transport over paho-mqtt 2.x.

- ``CallbackAPIVersion.VERSION2``, protocol MQTT 5, ``clean_start=False`` with a
  ``SessionExpiryInterval`` (without it the broker drops the session at disconnect);
- reconnects by itself with exponential backoff (paho's loop thread), also when the broker
  is down at start; subscriptions are renewed on every connect;
- ``publish`` waits for the PUBACK and fails on a refusing reason code (e.g. not
  authorised); it refuses at once when offline rather than let paho queue in memory, so
  the caller's durable outbox stays the one queue;
- manual acks: a message is acknowledged after its handler returned, so "acked" means
  "handled" (a handler that raised is delivered again after the next reconnect).
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from rae_sync.errors import TransportError
from rae_sync.identity import TlsMaterial
from rae_sync.transport.base import (
    DEFAULT_SESSION_EXPIRY_S,
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


def parse_mqtt_url(url: str) -> tuple[str, int, bool]:
    """``mqtt://host:port`` or ``mqtts://host:port`` → (host, port, tls)."""
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ValueError(f"invalid MQTT URL {url!r}: expected mqtt[s]://host:port")
    tls = u.scheme == "mqtts"
    return u.hostname, u.port or (8883 if tls else 1883), tls


class _Handle(PublishHandle):
    def __init__(self, owner: PahoTransport, info: mqtt.MQTTMessageInfo, topic: str) -> None:
        self._owner = owner
        self._info = info
        self._topic = topic

    def wait(self, timeout: float | None = None) -> None:
        try:
            self._info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as e:
            raise TransportError(f"publish to {self._topic} failed: {e}") from None
        if not self._info.is_published():
            raise TransportError(f"no PUBACK for {self._topic} within {timeout}s")
        rc = self._owner._pub_rc.pop(self._info.mid, None)
        if rc is not None and rc.is_failure:
            raise TransportError(f"broker refused the publish to {self._topic}: {rc}")


class PahoTransport(Transport):
    """One paho-mqtt client (see the module docstring)."""

    def __init__(self, host: str, port: int, client_id: str, *, tls: TlsMaterial | None = None,
                 use_tls: bool | None = None, clean_start: bool = False,
                 session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S, keepalive: int = 30,
                 reconnect_min_s: int = 1, reconnect_max_s: int = 30,
                 max_inflight: int = 1000, receive_maximum: int | None = None,
                 username: str | None = None, password: str | None = None) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        # MQTT 5 Receive Maximum: how many unacknowledged QoS 1 messages the broker may
        # send us at once (mosquitto's default without it is max_inflight_messages, 20).
        self.receive_maximum = receive_maximum
        self.session_expiry_s = session_expiry_s
        self.clean_start = clean_start
        self.keepalive = keepalive
        self._routes: list[tuple[str, Handler]] = []
        self._sub_ids: dict[str, int] = {}  # MQTT 5 subscription identifier per filter
        self._listeners: list[ConnectionListener] = []
        self._pub_rc: dict[int, Any] = {}
        self._pending_subacks: set[int] = set()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._started = False
        self._tls_dir: tempfile.TemporaryDirectory[str] | None = None
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5, manual_ack=True)
        c.reconnect_delay_set(reconnect_min_s, reconnect_max_s)
        c.max_inflight_messages_set(max_inflight)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        if username is not None:  # e.g. the broker's dynamic-security client of a node
            c.username_pw_set(username, password)
        if tls is not None:
            self._tls_dir = tempfile.TemporaryDirectory(prefix="rae-mqtt-tls-")
            d = Path(self._tls_dir.name)
            for name, text in (("ca.pem", tls.ca_pem), ("cert.pem", tls.cert_pem),
                               ("key.pem", tls.key_pem)):
                (d / name).write_text(text)
                (d / name).chmod(0o600)
            c.tls_set(ca_certs=str(d / "ca.pem"), certfile=str(d / "cert.pem"),
                      keyfile=str(d / "key.pem"))
        elif use_tls:
            c.tls_set()
        self._client = c

    @classmethod
    def from_url(cls, url: str, client_id: str, **kwargs: Any) -> PahoTransport:
        host, port, tls = parse_mqtt_url(url)
        if tls and kwargs.get("tls") is None:
            kwargs.setdefault("use_tls", True)
        return cls(host, port, client_id, **kwargs)

    # -- lifecycle ----------------------------------------------------------------------
    def connect(self, timeout: float | None = 10.0) -> None:
        if not self._started:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.session_expiry_s
            if self.receive_maximum is not None:
                props.ReceiveMaximum = self.receive_maximum
            self._client.connect_async(self.host, self.port, keepalive=self.keepalive,
                                       clean_start=self.clean_start, properties=props)
            self._client.loop_start()  # retries the first connection too
            self._started = True
        if timeout is not None and not self._connected.wait(timeout):
            raise TransportError(f"{self.client_id}: no connection to {self.host}:{self.port} "
                                 f"within {timeout}s (still trying)")

    def close(self) -> None:
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False
        self._connected.clear()
        if self._tls_dir is not None:
            self._tls_dir.cleanup()
            self._tls_dir = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def add_connection_listener(self, listener: ConnectionListener) -> None:
        self._listeners.append(listener)

    def _notify(self, up: bool) -> None:
        for listener in list(self._listeners):
            try:
                listener(up)
            except Exception:
                log.exception("connection listener of %s failed", self.client_id)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any,
                    props: Any) -> None:
        if rc.is_failure:
            log.warning("%s: broker refused the connection: %s", self.client_id, rc)
            return
        with self._lock:
            filters = list(dict.fromkeys(f for f, _ in self._routes))
        # also present in a kept session; subscribing again is harmless. "Connected" means
        # the subscriptions are in force, so it waits for their SUBACKs (which paho hands to
        # _on_subscribe on this same thread, after this callback returns).
        mids = {self._send_subscribe(f) for f in filters}
        with self._lock:
            self._pending_subacks = mids
        self._maybe_up()

    def _maybe_up(self) -> None:
        with self._lock:
            if self._pending_subacks or self._connected.is_set():
                return
            self._connected.set()
        self._notify(True)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any,
                      props: Any) -> None:
        for rc in rcs:
            if getattr(rc, "is_failure", False):
                log.error("%s: broker refused a subscription: %s", self.client_id, rc)
        with self._lock:
            self._pending_subacks.discard(mid)
        self._maybe_up()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any,
                       props: Any) -> None:
        was = self._connected.is_set()
        with self._lock:
            self._pending_subacks = set()
        self._connected.clear()
        if was:
            log.info("%s: disconnected (%s); reconnecting", self.client_id, rc)
            self._notify(False)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any,
                    props: Any) -> None:
        self._pub_rc[mid] = rc

    def _on_message(self, client: mqtt.Client, userdata: Any, m: mqtt.MQTTMessage) -> None:
        msg = InboundMessage(m.topic, bytes(m.payload), m.qos, bool(m.dup))
        # The broker sends one copy per matching subscription, tagged with its identifier:
        # route each copy to that subscription's handlers only, so overlapping filters do
        # not hand a handler the same message twice.
        sub_ids = getattr(m.properties, "SubscriptionIdentifier", None) if m.properties else None
        with self._lock:
            if sub_ids:
                wanted = {self._sub_ids.get(f) for f, _ in self._routes}
                ids = set(sub_ids) & wanted
                handlers = [h for f, h in self._routes if self._sub_ids.get(f) in ids]
            else:
                handlers = [h for f, h in self._routes if topic_matches(f, msg.topic)]
        # No handler yet (a kept session delivers before ``subscribe`` was called): leave it
        # unacknowledged rather than lose it; it comes again on the next connection.
        ok = bool(handlers) and all([run_handler(h, msg) for h in handlers])
        if ok and m.qos > 0:
            client.ack(m.mid, m.qos)

    # -- messaging ----------------------------------------------------------------------
    def publish_async(self, topic: str, payload: bytes, qos: int = 1) -> PublishHandle:
        check_topic(topic)
        if not self._connected.is_set():
            raise TransportError(f"{self.client_id}: not connected to {self.host}:{self.port}")
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
            if info.rc == mqtt.MQTT_ERR_NO_CONN:
                raise TransportError(f"{self.client_id}: connection lost while publishing")
            raise TransportError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        return _Handle(self, info, topic)

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        check_filter(topic_filter)
        with self._lock:
            self._routes.append((topic_filter, handler))
            self._sub_ids.setdefault(topic_filter, len(self._sub_ids) + 1)
        if self._connected.is_set():
            self._send_subscribe(topic_filter)

    def _send_subscribe(self, topic_filter: str) -> int:
        props = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
        props.SubscriptionIdentifier = self._sub_ids[topic_filter]
        _, mid = self._client.subscribe(topic_filter, options=SubscribeOptions(qos=1),
                                        properties=props)
        return int(mid or 0)
