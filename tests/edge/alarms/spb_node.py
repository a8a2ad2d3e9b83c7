"""A Sparkplug B edge node for tests and benchmarks: real paho client, real payloads.

It publishes NBIRTH/DBIRTH with aliases, then NDATA/DDATA by alias only, counts seq
0-255 like a real edge node, answers NCMD ``Node Control/Rebirth`` with a new birth
(when ``answer_rebirth``), and records every NCMD it receives.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from rae_edge.alarms import sparkplug_proto as sp

GROUP = "plant-1"
EDGE = "line-a-gw"
DEVICE = "press-1-plc"
# metric name -> (alias, datatype, device or None)
METRICS: dict[str, tuple[int, int, str | None]] = {
    "Alarms/ErrorCode": (1, sp.STRING, DEVICE),
    "cnc-2/SpindleAlarm": (2, sp.BOOLEAN, None),
}


class SpbEdgeNode:
    def __init__(self, port: int, *, answer_rebirth: bool = True) -> None:
        self.values: dict[str, Any] = {"Alarms/ErrorCode": "", "cnc-2/SpindleAlarm": False}
        self.stamps: dict[str, int] = {k: _now_ms() for k in self.values}
        self.seq = 0
        self.bd_seq = 0
        self.answer_rebirth = answer_rebirth
        self.ncmds: list[list[str]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"spb-{EDGE}-{port}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"spBv1.0/{GROUP}/NCMD/{EDGE}", qos=0)
        self.client.loop_start()
        time.sleep(0.2)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _topic(self, kind: str, device: str | None = None) -> str:
        return f"spBv1.0/{GROUP}/{kind}/{EDGE}" + (f"/{device}" if device else "")

    def _next_seq(self) -> int:
        s = self.seq
        self.seq = (self.seq + 1) % 256
        return s

    def _publish(self, topic: str, payload: Any) -> None:
        info = self.client.publish(topic, payload.SerializeToString(), qos=0)
        info.wait_for_publish(5)

    def birth(self) -> None:
        """NBIRTH (seq 0, bdSeq, node metrics) then DBIRTH for the device."""
        with self._lock:
            self.seq = 0
            nb = sp.Payload(timestamp=_now_ms(), seq=self._next_seq())
            bd = nb.metrics.add(name="bdSeq")
            sp.set_value(bd, sp.INT64, self.bd_seq)
            rb = nb.metrics.add(name="Node Control/Rebirth")
            sp.set_value(rb, sp.BOOLEAN, False)
            db = sp.Payload(timestamp=_now_ms())
            for name, (alias, dtype, device) in METRICS.items():
                m = (db if device else nb).metrics.add(name=name, alias=alias,
                                                       timestamp=self.stamps[name])
                sp.set_value(m, dtype, self.values[name])
            self._publish(self._topic("NBIRTH"), nb)
            db.seq = self._next_seq()
            self._publish(self._topic("DBIRTH", DEVICE), db)

    def data(self, name: str, value: Any, stamp_ms: int | None = None,
             seq: int | None = None) -> None:
        """NDATA/DDATA of one metric, by alias only (as after a birth)."""
        with self._lock:
            alias, dtype, device = METRICS[name]
            self.values[name] = value
            self.stamps[name] = stamp_ms or _now_ms()
            p = sp.Payload(timestamp=_now_ms())
            p.seq = self._next_seq() if seq is None else seq
            m = p.metrics.add(alias=alias, timestamp=self.stamps[name])
            sp.set_value(m, dtype, value)
            self._publish(self._topic("DDATA" if device else "NDATA", device), p)

    def raw(self, kind: str, body: bytes, device: str | None = DEVICE) -> None:
        self.client.publish(self._topic(kind, device), body, qos=0).wait_for_publish(5)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        p = sp.Payload()
        p.ParseFromString(msg.payload)
        names = [m.name for m in p.metrics]
        self.ncmds.append(names)
        if "Node Control/Rebirth" in names and self.answer_rebirth:
            threading.Thread(target=self.birth, daemon=True).start()


def _now_ms() -> int:
    return int(time.time() * 1000)
