"""OPC UA source (asyncua): data changes of mapped tags and alarm & condition events.

Read-only: it creates one subscription and never writes a node. A subscription's first
notification of each tag is its current value, so after every (re)connect the alarms
active now are read again, and one raised while the node was away is found; for events
it calls ``ConditionRefresh``. A lost connection is retried with doubling delays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from datetime import datetime
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import UaError

from rae_edge.alarm_settings import OpcUaEvents, OpcUaSourceSettings, OpcUaTag
from rae_edge.alarms import events
from rae_edge.alarms.certs import ensure_client_certificate
from rae_edge.alarms.sources.base import AlarmSource, SourceContext

log = logging.getLogger(__name__)


class OpcUaSource(AlarmSource):
    source_type = "opcua"
    settings: OpcUaSourceSettings

    def __init__(self, settings: OpcUaSourceSettings, ctx: SourceContext) -> None:
        super().__init__(settings, ctx)
        self._tags: dict[ua.NodeId, tuple[int, OpcUaTag]] = {
            ua.NodeId.from_string(t.node_id): (i, t) for i, t in enumerate(settings.tags)}
        self._event_map: dict[str, OpcUaEvents] = {e.source_name: e for e in settings.events}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def start(self) -> None:
        if self.settings.security == "none":
            log.warning("alarm source %s: OPC UA security 'none' (allow_insecure): lab only, "
                        "traffic is neither signed nor encrypted", self.name)
        self._stop.clear()
        self._thread = threading.Thread(target=self._main, name=f"alarms-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)
        if self._thread is not None:
            self._thread.join(10)
        self.set_state("stopped")

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        delay = self.ctx.retry_min_s
        while not self._stop.is_set():
            self.set_state("connecting")
            try:
                await self._session()
                delay = self.ctx.retry_min_s  # it was up: start the backoff again
                if self._stop.is_set():
                    break
                error = "connection lost"
            except Exception as exc:  # any failure: report, back off, retry
                error = f"{type(exc).__name__}: {exc}".strip(": ")
            log.warning("alarm source %s: %s; retrying in %.1f s", self.name, error, delay)
            self.set_state("down", error, retry_in=delay)
            await asyncio.to_thread(self._stop.wait, delay)
            delay = min(delay * 2, self.ctx.retry_max_s)

    async def _session(self) -> None:
        cfg = self.settings
        client = Client(cfg.url, timeout=5)
        client.application_uri = cfg.application_uri
        client.name = client.description = "RAE Edge alarms"
        if cfg.security == "basic256sha256":
            folder = cfg.certificate_dir or self.ctx.data_dir / "alarms" / "pki" / self.name
            cert, key = await ensure_client_certificate(folder, cfg.application_uri)
            await client.set_security(
                SecurityPolicyBasic256Sha256, str(cert), str(key),
                server_certificate=str(cfg.server_certificate) if cfg.server_certificate
                else None, mode=ua.MessageSecurityMode.SignAndEncrypt)
        if cfg.username:
            client.set_user(cfg.username)
            secret = cfg.secret()
            if secret is not None:
                client.set_password(secret)
        lost = asyncio.Event()
        wake = self._wake
        assert wake is not None
        wake.clear()

        async def on_lost(exc: Exception) -> None:
            lost.set()

        client.connection_lost_callback = on_lost
        await client.connect()
        try:
            sub = await client.create_subscription(cfg.publishing_interval_ms, _Handler(self))
            if self._tags:
                nodes = [client.get_node(n) for n in self._tags]
                # A server-side queue per tag: a bit that chatters faster than the
                # publishing interval still reports every raise and clear.
                results: Any = await sub.subscribe_data_change(
                    nodes, queuesize=cfg.queue_per_tag, sampling_interval=ua.Double(0.0))
                for node, res in zip(nodes, results, strict=True):
                    if isinstance(res, ua.StatusCode):
                        idx, tag = self._tags[node.nodeid]
                        raise MappingError(
                            f"alarms source {self.name!r} tags.{idx}.node_id "
                            f"{tag.node_id!r}: {res.name} on the server")
            if self._event_map:
                await sub.subscribe_events(client.nodes.server,
                                           ObjectIds.AlarmConditionType)
                with contextlib.suppress(UaError):  # not every server implements it
                    await client.nodes.server.call_method(
                        ua.NodeId.from_string(f"i={ObjectIds.ConditionType_ConditionRefresh}"),
                        ua.Variant(sub.subscription_id, ua.VariantType.UInt32))
            self.set_state("connected")
            while not self._stop.is_set() and not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), 1.0)
                if client.uaclient.state.name not in ("CONNECTED",):
                    break
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 3)

    # -- notifications (on this source's loop) ------------------------------------------
    def on_data(self, node: Node, val: Any, dv: ua.DataValue | None) -> None:
        entry = self._tags.get(node.nodeid)
        if entry is None:
            return
        _, tag = entry
        at: datetime | None = None
        if dv is not None:
            at = dv.SourceTimestamp or dv.ServerTimestamp
            if dv.StatusCode is not None and not dv.StatusCode.is_good():
                self.reject(f"{tag.node_id}: bad quality {dv.StatusCode.name}", tag.node_id)
                return
        try:
            ev = events.from_value(tag, source=self.name, key=tag.node_id, value=val,
                                   occurred_at=at)
        except (events.PayloadError, ValueError, TypeError) as exc:
            self.reject(str(exc), tag.node_id, repr(val).encode()[:1000])
            return
        self.emit(ev)

    def on_event(self, event: Any) -> None:
        source_name = str(getattr(event, "SourceName", "") or "")
        mapping = self._event_map.get(source_name)
        if mapping is None:
            return
        try:
            condition = str(getattr(event, "ConditionName", "") or "") or source_name
            message = getattr(event, "Message", None)
            text = str(message.Text or "") if isinstance(message, ua.LocalizedText) else str(
                message or "")
            event_id = getattr(event, "EventId", b"") or b""
            ev = events.from_condition(
                mapping, source=self.name, condition=f"{source_name}/{condition}",
                active=_active(event), message=text,
                severity=getattr(event, "Severity", None),
                occurred_at=getattr(event, "Time", None),
                event_id=event_id.hex() if isinstance(event_id, bytes) else str(event_id))
        except (events.PayloadError, ValueError, TypeError, AttributeError) as exc:
            self.reject(f"event from {source_name}: {exc}", source_name)
            return
        self.emit(ev)


class MappingError(RuntimeError):
    """The mapping names something the server does not have."""


def _active(event: Any) -> bool:
    """An alarm condition's ``ActiveState/Id`` (or its text when only that came)."""
    active_id = getattr(event, "ActiveState/Id", None)
    if active_id is not None:
        return bool(getattr(active_id, "Value", active_id))
    state = getattr(event, "ActiveState", None)
    if isinstance(state, ua.LocalizedText):
        return (state.Text or "").lower() == "active"
    raise ValueError("event without ActiveState")


class _Handler:
    """asyncua's subscription handler interface, forwarding to the source."""

    def __init__(self, source: OpcUaSource) -> None:
        self.source = source

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        dv = getattr(getattr(data, "monitored_item", None), "Value", None)
        self.source.on_data(node, val, dv)

    def event_notification(self, event: Any) -> None:
        self.source.on_event(event)

    def status_change_notification(self, status: Any) -> None:
        log.info("alarm source %s: subscription status %s", self.source.name, status)

