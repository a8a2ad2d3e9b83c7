"""Sparkplug B source: a plant's MQTT broker, topics ``spBv1.0/{group}/...``.

Per edge node it keeps the aliases its NBIRTH/DBIRTH declared (later DATA messages carry
only the alias) and the message ``seq`` (0-255, one counter per edge node across its
devices). A seq gap, data before any birth, or an unknown alias asks that edge node for
a rebirth (NCMD ``Node Control/Rebirth``); the birth carries every metric's current
value, so after a (re)connect of the node, which also asks for rebirths, the alarms
active now are read again. A payload that does not parse is set aside with its reason.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from google.protobuf.message import DecodeError
from paho.mqtt.enums import CallbackAPIVersion

from rae_edge.alarm_settings import SparkplugMetric, SparkplugSourceSettings
from rae_edge.alarms import events
from rae_edge.alarms import sparkplug_proto as sp
from rae_edge.alarms.sources.base import AlarmSource, SourceContext

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
REBIRTH_HOLDOFF_S = 2.0  # one request per edge node in this time


@dataclass
class _EdgeNode:
    seq: int | None = None  # last seq seen; None: no birth yet
    aliases: dict[int, tuple[str | None, str]] = field(default_factory=dict)
    online: bool = False
    rebirth_at: float = 0.0


class SparkplugSource(AlarmSource):
    source_type = "sparkplug"
    settings: SparkplugSourceSettings

    def __init__(self, settings: SparkplugSourceSettings, ctx: SourceContext) -> None:
        super().__init__(settings, ctx)
        self._map: dict[tuple[str, str | None, str], SparkplugMetric] = {
            (m.edge_node, m.device, m.metric): m for m in settings.metrics}
        self._nodes: dict[str, _EdgeNode] = {}
        self._client: mqtt.Client | None = None
        self.rebirths_requested = 0
        self.seq_gaps = 0
        self._delay = ctx.retry_min_s
        self._node_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.settings
        url = urlsplit(cfg.broker_url)
        client = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=cfg.client_id or f"rae-edge-{self.name}",
                             protocol=mqtt.MQTTv311, clean_session=True)
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.secret())
        if url.scheme == "mqtts":
            client.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.reconnect_delay_set(max(1, int(self.ctx.retry_min_s)),
                                   max(1, int(self.ctx.retry_max_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        self._stop.clear()
        self.set_state("connecting")
        port = url.port or (8883 if url.scheme == "mqtts" else 1883)
        client.connect_async(url.hostname or "127.0.0.1", port, keepalive=15)
        client.loop_start()  # paho's thread reconnects with backoff on its own

    def stop(self) -> None:
        self._stop.set()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        self.set_state("stopped")

    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, rc: Any,
                    _props: Any = None) -> None:
        if rc.is_failure:
            self.set_state("down", f"broker refused: {rc}")
            return
        client.subscribe(f"{NAMESPACE}/{self.settings.group_id}/+/+", qos=0)
        client.subscribe(f"{NAMESPACE}/{self.settings.group_id}/+/+/+", qos=0)
        self.set_state("connected")
        # What happened while away: ask every mapped edge node to re-announce its values.
        with self._node_lock:
            self._nodes.clear()
        for edge in sorted({m.edge_node for m in self.settings.metrics}):
            self._rebirth(edge, "reconnected", force=True)

    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, rc: Any,
                       _props: Any = None) -> None:
        if not self._stop.is_set():
            self.set_state("down", f"disconnected: {rc}", retry_in=self.ctx.retry_max_s)

    # -- messages (paho's thread) ------------------------------------------------------
    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.handle(msg.topic, bytes(msg.payload))
        except Exception as exc:  # never let one message end the loop
            self.reject(f"{type(exc).__name__}: {exc}", msg.topic, bytes(msg.payload))

    def handle(self, topic: str, raw: bytes) -> None:
        parts = topic.split("/")
        if len(parts) not in (4, 5) or parts[0] != NAMESPACE:
            return
        kind, edge = parts[2], parts[3]
        device = parts[4] if len(parts) == 5 else None
        if kind in ("NCMD", "DCMD", "STATE"):
            return
        payload = sp.Payload()
        try:
            payload.ParseFromString(raw)
        except DecodeError as exc:
            self.reject(f"not a Sparkplug B payload: {exc}", topic, raw)
            return
        gap = ""
        with self._node_lock:
            node = self._nodes.setdefault(edge, _EdgeNode())
            if kind == "NDEATH":
                node.online, node.seq = False, None
                return
            if kind == "NBIRTH":
                node.aliases = {}
                node.online = True
                node.seq = int(payload.seq) if payload.HasField("seq") else 0
            elif node.seq is None:
                gap = f"{kind} before any NBIRTH"
            else:
                expected = (node.seq + 1) % 256
                got = int(payload.seq) if payload.HasField("seq") else -1
                gap = "" if got == expected else f"seq {got} after {node.seq}"
                node.seq = got if got >= 0 else node.seq
            if kind in ("NBIRTH", "DBIRTH"):
                for m in payload.metrics:
                    if m.HasField("alias") and m.name:
                        node.aliases[int(m.alias)] = (device, m.name)
            need_rebirth = bool(gap)
            if gap:
                self.seq_gaps += 1
                log.info("alarm source %s: %s %s: %s", self.name, kind, edge, gap)
            aliases = dict(node.aliases)
        if need_rebirth:
            self._rebirth(edge, gap)
        if kind == "DDEATH":
            return
        stamp = _ms(payload.timestamp) if payload.HasField("timestamp") else None
        for m in payload.metrics:
            name = m.name
            if not name and m.HasField("alias"):
                known = aliases.get(int(m.alias))
                if known is None:
                    self.reject(f"unknown alias {m.alias} of edge node {edge!r} (no birth "
                                f"declared it)", topic)
                    self._rebirth(edge, f"unknown alias {m.alias}")
                    continue
                name = known[1]
            mapping = self._map.get((edge, device, name))
            if mapping is None:
                continue
            at = _ms(m.timestamp) if m.HasField("timestamp") else stamp
            key = "/".join(p for p in (edge, device, name) if p)
            try:
                ev = events.from_value(mapping, source=self.name, key=key,
                                       value=sp.metric_value(m), occurred_at=at,
                                       event_id=f"{kind}:{payload.seq}")
            except (events.PayloadError, ValueError, TypeError) as exc:
                self.reject(str(exc), topic, raw)
                continue
            self.emit(ev)

    def _rebirth(self, edge: str, why: str, force: bool = False) -> None:
        """NCMD ``Node Control/Rebirth`` to ``edge`` (at most once per holdoff)."""
        if not self.settings.rebirth or self._client is None:
            return
        now = time.monotonic()
        with self._node_lock:
            node = self._nodes.setdefault(edge, _EdgeNode())
            if not force and now - node.rebirth_at < REBIRTH_HOLDOFF_S:
                return
            node.rebirth_at = now
        payload = sp.Payload(timestamp=int(time.time() * 1000))
        metric = payload.metrics.add(name=REBIRTH)
        sp.set_value(metric, sp.BOOLEAN, True)
        self._client.publish(f"{NAMESPACE}/{self.settings.group_id}/NCMD/{edge}",
                             payload.SerializeToString(), qos=0)
        self.rebirths_requested += 1
        log.info("alarm source %s: asked %s for a rebirth (%s)", self.name, edge, why)

    def health(self) -> dict[str, Any]:
        h = super().health()
        h.update(rebirths_requested=self.rebirths_requested, seq_gaps=self.seq_gaps)
        return h


def _ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


