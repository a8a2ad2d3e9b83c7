"""Sparkplug B alarms on a real mosquitto with real protobuf payloads: aliases from the
births resolve DATA messages; one alarm is one incident and one push; a replay or a
reconnect doubles nothing and what was raised while away is read from the rebirth; a seq
gap asks for a rebirth; a malformed payload is set aside and the stream goes on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from rae_edge.node import EdgeNode
from tests.edge.alarms.conftest import (
    CORRECTION,
    alarm_incidents,
    alarm_pushes,
    running,
    settle,
    wait_until,
)
from tests.edge.alarms.spb_node import DEVICE, EDGE, GROUP, SpbEdgeNode
from tests.fixtures.mosquitto import Mosquitto

REBIRTH = ["Node Control/Rebirth"]


def _source(broker: Mosquitto) -> dict[str, Any]:
    return {"type": "sparkplug", "name": "spb-1", "broker_url": broker.url,
            "group_id": GROUP,
            "metrics": [{"edge_node": EDGE, "device": DEVICE, "metric": "Alarms/ErrorCode",
                         "machine_id": "press-1", "severity": 900},
                        {"edge_node": EDGE, "metric": "cnc-2/SpindleAlarm",
                         "machine_id": "cnc-2", "code": "S17"}]}


@pytest.fixture
def edge(mosquitto: Mosquitto) -> Iterator[SpbEdgeNode]:
    e = SpbEdgeNode(mosquitto.port)
    e.birth()
    yield e
    e.close()


def test_alarm_by_alias_is_one_incident_and_one_push(plant: EdgeNode, mosquitto: Mosquitto,
                                                     edge: SpbEdgeNode) -> None:
    with running(plant, [_source(mosquitto)]) as svc:
        src = svc.sources[0]
        assert src.wait_state("connected", 20)
        wait_until(lambda: edge.ncmds, what="rebirth asked on connect")  # and answered
        time.sleep(0.5)
        stamp = int(time.time() * 1000)
        edge.data("Alarms/ErrorCode", "E404", stamp)
        wait_until(lambda: alarm_pushes(plant), what="alarm push")
        edge.data("Alarms/ErrorCode", "E404", stamp)  # a repeat of the same DATA
        settle(svc)
        [inc] = alarm_incidents(plant)
        [push] = alarm_pushes(plant)
        assert inc.error_code == "E404" and int(inc.occurred_at.timestamp() * 1000) == stamp
        assert push.payload["incident_id"] == inc.id and push.payload["severity"] == 900
        assert CORRECTION in push.payload["message"]
        edge.data("cnc-2/SpindleAlarm", True)
        wait_until(lambda: alarm_incidents(plant, "cnc-2"), what="node metric alarm")
        edge.data("Alarms/ErrorCode", "", stamp + 30_000)
        wait_until(lambda: len(alarm_pushes(plant)) == 2, what="clear")
        assert alarm_pushes(plant)[1].payload["duration_s"] == 30.0
        assert src.health()["rejected"] == 0


def test_seq_gap_asks_for_a_rebirth(plant: EdgeNode, mosquitto: Mosquitto,
                                    edge: SpbEdgeNode) -> None:
    with running(plant, [_source(mosquitto)]) as svc:
        src = svc.sources[0]
        assert src.wait_state("connected", 20)
        wait_until(lambda: edge.ncmds, what="rebirth on connect")
        time.sleep(2.2)  # past the rebirth hold-off
        before, gaps = len(edge.ncmds), src.health()["seq_gaps"]
        edge.data("Alarms/ErrorCode", "", seq=(edge.seq + 5) % 256)  # five messages lost
        wait_until(lambda: len(edge.ncmds) > before, what="rebirth after the gap")
        assert edge.ncmds[-1] == REBIRTH
        assert src.health()["seq_gaps"] == gaps + 1


def test_reconnect_replay_and_the_gap_double_nothing(plant: EdgeNode, mosquitto: Mosquitto,
                                                     edge: SpbEdgeNode) -> None:
    src_cfg = _source(mosquitto)
    with running(plant, [src_cfg]) as svc:
        assert svc.sources[0].wait_state("connected", 20)
        wait_until(lambda: edge.ncmds, what="rebirth on connect")
        edge.data("Alarms/ErrorCode", "E404")
        wait_until(lambda: alarm_incidents(plant), what="first alarm")
        settle(svc)
    # while the node is away: cnc-2 raises, press-1 stays on E404
    edge.data("cnc-2/SpindleAlarm", True)
    with running(plant, [src_cfg]) as svc:  # reconnect: rebirth asked, births read
        wait_until(lambda: alarm_incidents(plant, "cnc-2"), what="alarm raised while away")
        settle(svc)
        assert len(alarm_incidents(plant)) == 1 and len(alarm_pushes(plant)) == 1
        assert len(alarm_incidents(plant, "cnc-2")) == 1
    # the broker restarts under a running node: paho reconnects, rebirth again
    with running(plant, [src_cfg]) as svc:
        src = svc.sources[0]
        assert src.wait_state("connected", 20)
        mosquitto.stop()
        wait_until(lambda: src.health()["state"] == "down", what="down")
        mosquitto.start()
        edge.client.reconnect()
        wait_until(lambda: src.health()["connects"] >= 2, timeout=30, what="reconnected")
        settle(svc, 1.0)
        assert len(alarm_incidents(plant)) == 1 and len(alarm_incidents(plant, "cnc-2")) == 1
        assert len(alarm_pushes(plant)) == 1 and len(alarm_pushes(plant, "cnc-2")) == 1


def test_malformed_payload_is_set_aside_and_the_stream_goes_on(
        plant: EdgeNode, mosquitto: Mosquitto, edge: SpbEdgeNode) -> None:
    with running(plant, [_source(mosquitto)]) as svc:
        src = svc.sources[0]
        assert src.wait_state("connected", 20)
        wait_until(lambda: edge.ncmds, what="rebirth on connect")
        time.sleep(0.5)
        junk = b"\xff\xff\xff not protobuf"
        edge.raw("DDATA", junk)
        wait_until(lambda: src.health()["rejected"] == 1, what="rejected")
        assert "not a Sparkplug B payload" in src.health()["last_error"]
        edge.data("Alarms/ErrorCode", "E404")
        wait_until(lambda: alarm_incidents(plant), what="the next alarm still arrives")
        assert svc._store is not None
        [rej] = svc._store.rejects()
        assert rej["topic"] == f"spBv1.0/{GROUP}/DDATA/{EDGE}/{DEVICE}" and rej["size"] == len(junk)
