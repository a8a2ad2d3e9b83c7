"""Machine alarms: from the alarm at the source to the ``alarm`` push on the WebSocket of
every watching tablet (50 tablets), for OPC UA (a real asyncua server) and Sparkplug B (a
real mosquitto, protobuf payloads), against a real ``rae-edge serve`` process; then a
flood of alarm events while tablets ask for briefings.

Each alarm is a new error code on press-1's register (a new incident each time: the node
looks up the briefing for that code, pushes, then stores and indexes). The baseline
beside each is the raw subscription delivery of the same library on the same machine:
an asyncua client's data-change notification after the write, a paho subscriber's
message after the publish. Security none on OPC UA here so the two compare like for like.

The flood publishes ``RATE`` Sparkplug events/s (raise/clear of 100 alarms of robot-4,
chattering) for ``RAE_BENCH_FLOOD_S`` seconds (5 with ``--quick``, 15 by default; 60 is
the issue's full run) while a client asks for press-1's briefing in a loop; the figure is
the briefing p95 during the flood beside the same without it, with the events the source
received, the distinct alarms stored and the repeats coalesced.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Row, main_for, percentiles, row

TABLETS = 50
RATE = 1000
FLOOD_ALARMS = 100
FLOOD_EDGE = "flood-gw"
TAG = "press-1.ErrorCode"


def _prepare(data_dir: Path) -> None:
    """The plant: press-1 with a past E404 and its correction; cnc-2; robot-4."""
    from rae_edge import config
    from rae_edge.node import EdgeNode
    from rae_sync.domain import Incident, Machine

    node = EdgeNode(config.load(None, data_dir=data_dir))
    try:
        t = node.tenant_id
        node.duck.upsert_machines([
            Machine(tenant_id=t, id=m, name=m, qr_code=m.upper(), line="Line A")
            for m in ("press-1", "cnc-2", "robot-4")])
        past = Incident(tenant_id=t, machine_id="press-1",
                        occurred_at=datetime(2026, 2, 3, 9, 0, tzinfo=UTC), error_code="E404",
                        symptom="E404 position sensor fault", action="Replaced sensor X")
        node.memory.add_incidents(t, [past])
        node.memory.add_correction(t, machine_id="press-1", author="bench",
                                   text="Sensor X was actually loose", target_id=past.id)
    finally:
        node.close()


def _config(path: Path, plc_url: str, broker_url: str) -> None:
    from tests.edge.alarms.spb_node import DEVICE, EDGE, GROUP

    metrics: list[dict[str, Any]] = [
        {"edge_node": EDGE, "device": DEVICE, "metric": "Alarms/ErrorCode",
         "machine_id": "press-1"}]
    metrics += [{"edge_node": FLOOD_EDGE, "metric": f"Alarm/{i}", "machine_id": "robot-4",
                 "code": f"R{100 + i}"} for i in range(FLOOD_ALARMS)]
    path.write_text(json.dumps({"alarms": {"chatter_window_s": 60, "sources": [
        {"type": "opcua", "name": "plc-1", "url": plc_url, "security": "none",
         "allow_insecure": True, "publishing_interval_ms": 10,
         "tags": [{"node_id": f"ns=2;s={TAG}", "machine_id": "press-1"}]},
        {"type": "sparkplug", "name": "spb-1", "broker_url": broker_url, "group_id": GROUP,
         "metrics": metrics}]}}))


class _Tablets:
    """``TABLETS`` WebSockets on press-1; records when each got each alarm."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.replace("http://", "ws://") + \
            f"/api/v1/push?machine_id=press-1&token={token}"
        self.arrivals: dict[str, list[float]] = {}

    async def __aenter__(self) -> _Tablets:
        import websockets

        self.sockets = [await websockets.connect(self.url, open_timeout=60, max_size=None)
                        for _ in range(TABLETS)]
        for ws in self.sockets:
            assert json.loads(await ws.recv())["type"] == "hello"
        self.readers = [asyncio.create_task(self._read(ws)) for ws in self.sockets]
        return self

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            t = time.perf_counter()
            msg = json.loads(raw)
            if msg.get("type") == "alarm" and msg["data"]["state"] == "active":
                self.arrivals.setdefault(msg["data"]["error_code"], []).append(t)

    async def wait_all(self, code: str, timeout: float = 15.0) -> float:
        deadline = time.perf_counter() + timeout
        while len(self.arrivals.get(code, [])) < TABLETS:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{len(self.arrivals.get(code, []))} of {TABLETS} "
                                   f"tablets got the alarm {code}")
            await asyncio.sleep(0.002)
        return max(self.arrivals[code])

    async def __aexit__(self, *exc: object) -> None:
        for t in self.readers:
            t.cancel()
        for ws in self.sockets:
            await ws.close()


async def _alarm_latency(url: str, token: str, raise_alarm: Any, n: int,
                         prefix: str) -> list[float]:
    out: list[float] = []
    async with _Tablets(url, token) as tablets:
        for i in range(n):
            code = f"{prefix}{1000 + i}"
            t0 = time.perf_counter()
            await asyncio.to_thread(raise_alarm, code)
            out.append((await tablets.wait_all(code) - t0) * 1000)
            await asyncio.sleep(0.15)
    return out


def _raw_opcua(plc: Any, n: int) -> list[float]:
    """asyncua alone: write → the client's data-change notification."""
    from asyncua import ua
    from asyncua.client.client import Client

    got: dict[str, float] = {}

    class Handler:
        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            got[str(val)] = time.perf_counter()

    async def main() -> list[float]:
        out: list[float] = []
        async with Client(plc.url) as client:
            sub = await client.create_subscription(10, Handler())
            await sub.subscribe_data_change(client.get_node(ua.NodeId.from_string(
                f"ns=2;s={TAG}")))
            await asyncio.sleep(0.5)
            for i in range(n):
                code = f"RAW{i}"
                t0 = time.perf_counter()
                await asyncio.to_thread(plc.write, TAG, code)
                while code not in got:
                    await asyncio.sleep(0.0005)
                out.append((got[code] - t0) * 1000)
                await asyncio.sleep(0.05)
        return out

    return asyncio.run(main())


def _raw_mqtt(port: int, n: int) -> list[float]:
    """paho alone: publish (a Sparkplug payload) → a subscriber's message."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from rae_edge.alarms import sparkplug_proto as sp

    got: dict[int, float] = {}
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw-sub")

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        p = sp.Payload()
        p.ParseFromString(msg.payload)
        got[int(p.seq)] = time.perf_counter()

    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("bench/raw", qos=0)
    sub.loop_start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw-pub")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    time.sleep(0.5)
    out = []
    for i in range(n):
        p = sp.Payload(timestamp=int(time.time() * 1000), seq=i)
        sp.set_value(p.metrics.add(alias=1), sp.STRING, f"E{i}")
        t0 = time.perf_counter()
        pub.publish("bench/raw", p.SerializeToString(), qos=0)
        while i not in got:
            time.sleep(0.0002)
        out.append((got[i] - t0) * 1000)
        time.sleep(0.02)
    for c in (sub, pub):
        c.disconnect()
        c.loop_stop()
    return out


def _flood(port: int, seconds: float) -> int:
    """``RATE`` events/s from edge node ``FLOOD_EDGE``: a birth, then NDATA by alias."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from rae_edge.alarms import sparkplug_proto as sp
    from tests.edge.alarms.spb_node import GROUP

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-flood")
    c.connect("127.0.0.1", port)
    c.loop_start()
    topic = f"spBv1.0/{GROUP}/%s/{FLOOD_EDGE}"
    birth = sp.Payload(timestamp=int(time.time() * 1000), seq=0)
    for i in range(FLOOD_ALARMS):
        sp.set_value(birth.metrics.add(name=f"Alarm/{i}", alias=i + 1), sp.BOOLEAN, False)
    c.publish(topic % "NBIRTH", birth.SerializeToString()).wait_for_publish(5)
    seq, sent, t0 = 0, 0, time.perf_counter()
    state = [False] * FLOOD_ALARMS
    while time.perf_counter() - t0 < seconds:
        due = int((time.perf_counter() - t0) * RATE)
        while sent < due:
            i = sent % FLOOD_ALARMS
            state[i] = not state[i]
            seq = (seq + 1) % 256
            p = sp.Payload(timestamp=int(time.time() * 1000), seq=seq)
            sp.set_value(p.metrics.add(alias=i + 1, timestamp=int(time.time() * 1000)),
                         sp.BOOLEAN, state[i])
            c.publish(topic % "NDATA", p.SerializeToString())
            sent += 1
        time.sleep(0.001)
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()
    return sent


def _briefings(url: str, token: str, stop: threading.Event) -> list[float]:
    import httpx

    out: list[float] = []
    with httpx.Client(base_url=url, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            client.get("/api/v1/machines/press-1/briefing").raise_for_status()
            out.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.02)
    return out


def _briefings_for(url: str, token: str, seconds: float) -> list[float]:
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    return _briefings(url, token, stop)


def run(quick: bool = False, flood_s: float | None = None) -> list[Row]:
    import httpx

    from bench.nodeproc import NodeProcess, cpu_seconds, free_port, make_token
    from rae_edge.alarms.sim_plc import PlcServer
    from tests.edge.alarms.spb_node import SpbEdgeNode
    from tests.fixtures.mosquitto import Mosquitto

    n = 15 if quick else 40
    flood_s = flood_s or float(os.environ.get("RAE_BENCH_FLOOD_S", 5 if quick else 15))
    tmp = Path(tempfile.mkdtemp(prefix="bench-alarms-"))
    broker = Mosquitto(tmp / "broker")
    plc = PlcServer(free_port(), tmp / "plc", {TAG: ""}, secure=False)
    try:
        broker.start()
        plc.start()
        _prepare(tmp / "node")
        _config(tmp / "node.json", plc.url, broker.url)
        token = make_token(tmp / "node", "technician")
        edge = SpbEdgeNode(broker.port)
        node = NodeProcess(tmp / "node", extra_args=["--config", str(tmp / "node.json")])
        node.start()
        try:
            health = httpx.get(f"{node.url}/api/v1/health").json()["alarms"]
            deadline = time.monotonic() + 30
            while any(s["state"] != "connected" for s in health["sources"]):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"alarm sources not connected: {health}")
                time.sleep(0.2)
                health = httpx.get(f"{node.url}/api/v1/health").json()["alarms"]
            time.sleep(1.0)  # the rebirth asked on connect is answered

            def opcua(code: str) -> None:
                plc.write(TAG, code)

            def spb(code: str) -> None:
                edge.data("Alarms/ErrorCode", code)

            asyncio.run(_alarm_latency(node.url, token, opcua, 2, "W"))  # warm-up
            ua_ms = asyncio.run(_alarm_latency(node.url, token, opcua, n, "E"))
            spb_ms = asyncio.run(_alarm_latency(node.url, token, spb, n, "S"))
            raw_ua = _raw_opcua(plc, n)
            raw_mqtt = _raw_mqtt(broker.port, n)
            cpu0, t0 = cpu_seconds([node.pid]), time.perf_counter()
            quiet = _briefings_for(node.url, token, min(flood_s, 5.0))
            quiet_cores = (cpu_seconds([node.pid]) - cpu0) / (time.perf_counter() - t0)
            before = httpx.get(f"{node.url}/api/v1/health").json()["alarms"]
            stop = threading.Event()
            during: list[float] = []
            reader = threading.Thread(target=lambda: during.extend(
                _briefings(node.url, token, stop)))
            reader.start()
            cpu0, t0 = cpu_seconds([node.pid]), time.perf_counter()
            sent = _flood(broker.port, flood_s)
            node_cores = (cpu_seconds([node.pid]) - cpu0) / (time.perf_counter() - t0)
            stop.set()
            reader.join()
            time.sleep(2.0)
            after = httpx.get(f"{node.url}/api/v1/health").json()["alarms"]
            alarms = httpx.get(f"{node.url}/api/v1/alarms?machine_id=robot-4",
                               headers={"Authorization": f"Bearer {token}"}).json()["alarms"]
        finally:
            node.stop()
            edge.close()
    finally:
        plc.stop()
        broker.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    ua_p, spb_p = percentiles(ua_ms), percentiles(spb_ms)
    rua, rmq = percentiles(raw_ua), percentiles(raw_mqtt)
    q, f = percentiles(quiet), percentiles(during)
    spb_before = next(s for s in before["sources"] if s["name"] == "spb-1")
    spb_after = next(s for s in after["sources"] if s["name"] == "spb-1")
    # the birth announces each flood alarm once (cleared) before the NDATA stream
    received = spb_after["events"] - spb_before["events"] - FLOOD_ALARMS
    coalesced = after["queue"]["coalesced"] - before["queue"]["coalesced"]
    distinct = len({a["key"] for a in alarms})
    return [
        row(f"OPC UA alarm → push p95 ({TABLETS} tablets)", ua_p["p95"], "ms",
            target="<= 500 ms", baseline="raw asyncua data change", baseline_value=rua["p95"],
            ok=ua_p["p95"] <= 500,
            notes=f"p50 {ua_p['p50']:.1f} ms, p99 {ua_p['p99']:.1f} ms (the last of "
                  f"{TABLETS} tablets), {n} alarms, each a new code → new incident; raw "
                  f"write→notification p50 {rua['p50']:.1f} ms"),
        row(f"Sparkplug B alarm → push p95 ({TABLETS} tablets)", spb_p["p95"], "ms",
            target="<= 500 ms", baseline="raw paho pub→sub", baseline_value=rmq["p95"],
            ok=spb_p["p95"] <= 500,
            notes=f"p50 {spb_p['p50']:.1f} ms, p99 {spb_p['p99']:.1f} ms; raw MQTT "
                  f"p50 {rmq['p50']:.2f} ms"),
        row(f"briefing p95 during a {RATE}/s alarm flood", f["p95"], "ms",
            baseline="briefing p95 without flood", baseline_value=q["p95"],
            notes=f"{flood_s:.0f} s flood: {sent} events sent, {received} received by the "
                  f"source ({sent - received} lost before it), "
                  f"{coalesced} coalesced, 0 dropped by the node; {distinct} of "
                  f"{FLOOD_ALARMS} distinct alarms stored as incidents; briefing p50 "
                  f"{f['p50']:.1f} ms vs {q['p50']:.1f} ms quiet ({len(during)} / "
                  f"{len(quiet)} briefings); node process used {node_cores:.2f} cores during "
                  f"the flood (briefings included) vs {quiet_cores:.2f} without, load "
                  f"average {os.getloadavg()[0]:.1f}"),
        row("flood: distinct alarms lost", float(FLOOD_ALARMS - distinct), "alarms",
            target="0", ok=distinct == FLOOD_ALARMS,
            notes=f"coalesced repeats {coalesced}; queue waited for room "
                  f"{after['queue']['waited_for_room']} times"),
    ]


if __name__ == "__main__":
    main_for(run)
