"""OPC UA alarms against a real asyncua server (in this process, on loopback): one
incident and one push per alarm; reconnects and replays double nothing; an alarm raised
while the node was away is found; chattering is one incident; a value that cannot be read
is set aside and the loop goes on; Basic256Sha256 connects with the node's certificate."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rae_edge.alarms.certs import ensure_client_certificate
from rae_edge.alarms.sim_plc import PlcServer
from rae_edge.node import EdgeNode
from tests.edge.alarms.conftest import (
    CORRECTION,
    PAST_FIX,
    alarm_incidents,
    alarm_pushes,
    running,
    settle,
    wait_until,
)
from tests.fixtures.mosquitto import free_port

TAG, BIT = "press-1.ErrorCode", "cnc-2.SpindleAlarm"


@pytest.fixture
def plc(tmp_path: Path) -> Iterator[PlcServer]:
    server = PlcServer(free_port(), tmp_path / "plc", {TAG: "", BIT: False}, secure=False)
    server.start()
    yield server
    server.stop()


def _source(plc: PlcServer, **kw: Any) -> dict[str, Any]:
    src: dict[str, Any] = {
        "type": "opcua", "name": "plc-1", "url": plc.url, "security": "none",
        "allow_insecure": True, "publishing_interval_ms": 50,
        "tags": [{"node_id": plc.node_id(TAG), "machine_id": "press-1", "severity": 800},
                 {"node_id": plc.node_id(BIT), "machine_id": "cnc-2", "code": "S17",
                  "text": "Spindle overload ({code})"}]}
    src.update(kw)
    return src


def test_alarm_becomes_one_incident_and_one_push_with_the_briefing(
        plant: EdgeNode, plc: PlcServer) -> None:
    with running(plant, [_source(plc)]) as svc:
        assert svc.sources[0].wait_state("connected", 20)
        raised = datetime.now(UTC).replace(microsecond=0)
        plc.write(TAG, "E404", raised)
        pushes = wait_until(lambda: alarm_pushes(plant), what="alarm push")
        incs = wait_until(lambda: alarm_incidents(plant), what="alarm incident")
        settle(svc)
        pushes, incs = alarm_pushes(plant), alarm_incidents(plant)
        assert len(pushes) == 1 and len(incs) == 1
        inc, data = incs[0], pushes[0].payload
        assert (inc.error_code, inc.occurred_at, inc.source) == ("E404", raised, "alarm:plc-1")
        assert data["incident_id"] == inc.id and data["state"] == "active"
        assert data["severity"] == 800 and data["line"] == "Line A"
        # "E404 on press-1 just now. Last time (3 Feb 2026) fixed by ... — correction: ..."
        assert data["message"].startswith("E404 on press-1 just now. Last time (3 Feb 2026)")
        assert PAST_FIX in data["message"] and CORRECTION in data["message"]
        past = data["briefing"]["incidents"]
        assert [p["error_code"] for p in past] == ["E404"]
        assert past[0]["corrections"][0]["text"] == CORRECTION
        # the clear closes it with its duration
        plc.write(TAG, "", raised + timedelta(seconds=42))
        wait_until(lambda: len(alarm_pushes(plant)) == 2, what="clear push")
        cleared = alarm_pushes(plant)[1].payload
        assert cleared["state"] == "cleared" and cleared["duration_s"] == 42.0
        assert cleared["incident_id"] == inc.id
        [st] = [s for s in svc.states() if s.machine_id == "press-1"]
        assert (st.active, st.duration_s, st.count) == (False, 42.0, 1)
        assert len(alarm_incidents(plant)) == 1
        # an alarm bit with a fixed code, on another machine
        plc.write(BIT, True)
        wait_until(lambda: alarm_incidents(plant, "cnc-2"), what="bit alarm")
        [bit] = alarm_incidents(plant, "cnc-2")
        assert (bit.error_code, bit.symptom) == ("S17", "Spindle overload (S17)")
        health = svc.health()
        assert health["sources"][0]["state"] == "connected"
        assert health["queue"]["dropped"] == 0


def test_reconnect_and_replay_double_nothing_and_the_gap_is_read(
        plant: EdgeNode, plc: PlcServer) -> None:
    src = _source(plc)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    plc.write(TAG, "E404", t0)
    with running(plant, [src]) as svc:  # active at connect: read from the subscription
        wait_until(lambda: alarm_incidents(plant), what="alarm active at connect")
        plc.stop()  # the server goes away...
        wait_until(lambda: svc.health()["sources"][0]["state"] == "down", what="down")
        assert svc.health()["sources"][0]["last_error"]
        plc.start()  # ...and comes back with the same alarm still active
        wait_until(lambda: svc.health()["sources"][0]["connects"] >= 2, what="reconnect")
        settle(svc)
        assert len(alarm_incidents(plant)) == 1 and len(alarm_pushes(plant)) == 1
    # The node is away while press-1 clears and raises a new E404; cnc-2 raises too.
    t1 = t0 + timedelta(minutes=3)
    plc.write(TAG, "", t0 + timedelta(minutes=1))
    plc.write(TAG, "E405", t1)
    plc.write(BIT, True, t1)
    with running(plant, [src]) as svc:  # a restart of the node's sources
        wait_until(lambda: alarm_incidents(plant, "cnc-2"), what="gap alarm on cnc-2")
        wait_until(lambda: len(alarm_incidents(plant)) == 2, what="gap alarm on press-1")
        settle(svc)
        codes = sorted(i.error_code or "" for i in alarm_incidents(plant))
        assert codes == ["E404", "E405"]
        assert [i.occurred_at for i in alarm_incidents(plant) if i.error_code == "E405"] == [t1]
        assert len(alarm_incidents(plant, "cnc-2")) == 1
    # The same again (a replay of everything the server holds): nothing new.
    with running(plant, [src]) as svc:
        assert svc.sources[0].wait_state("connected", 20)
        settle(svc)
        assert len(alarm_incidents(plant)) == 2 and len(alarm_incidents(plant, "cnc-2")) == 1
        assert len(alarm_pushes(plant)) == 3  # E404, its end when E405 came, E405
        assert len(alarm_pushes(plant, "cnc-2")) == 1


def test_chattering_alarm_is_one_incident_with_a_count(plant: EdgeNode,
                                                        plc: PlcServer) -> None:
    with running(plant, [_source(plc)]) as svc:
        assert svc.sources[0].wait_state("connected", 20)
        t = datetime.now(UTC)
        for i in range(6):
            plc.write(TAG, "E404", t + timedelta(seconds=2 * i))
            time.sleep(0.08)
            plc.write(TAG, "", t + timedelta(seconds=2 * i + 1))
            time.sleep(0.08)
        wait_until(lambda: any(s.count == 6 and not s.active for s in svc.states()),
                   what="count of 6")
        settle(svc)
        assert len(alarm_incidents(plant)) == 1
        states = [m.payload["state"] for m in alarm_pushes(plant)]
        assert states.count("active") == 1 and states[0] == "active"  # one raise pushed


def test_unreadable_value_is_set_aside_and_the_loop_goes_on(plant: EdgeNode,
                                                            plc: PlcServer) -> None:
    src = _source(plc)
    src["tags"][1].pop("code")  # a boolean bit without a fixed code cannot name an error
    with running(plant, [src]) as svc:
        assert svc.sources[0].wait_state("connected", 20)
        plc.write(BIT, True)
        wait_until(lambda: svc.health()["sources"][0]["rejected"] == 1, what="rejected")
        assert "no fixed 'code'" in svc.health()["sources"][0]["last_error"]
        plc.write(TAG, "E404")
        wait_until(lambda: alarm_incidents(plant), what="the next alarm")
        [reject] = svc._store.rejects() if svc._store else []
        assert reject["source"] == "plc-1" and "cnc-2.SpindleAlarm" in reject["topic"]


def test_a_node_id_the_server_lacks_is_named_in_health(plant: EdgeNode,
                                                       plc: PlcServer) -> None:
    src = _source(plc)
    src["tags"][1]["node_id"] = "ns=2;s=cnc-2.NoSuchTag"
    with running(plant, [src]) as svc:
        wait_until(lambda: svc.health()["sources"][0]["state"] == "down", what="down")
        err = svc.health()["sources"][0]["last_error"]
        assert "tags.1.node_id 'ns=2;s=cnc-2.NoSuchTag'" in err and "BadNodeIdUnknown" in err


def test_secured_basic256sha256_connects_with_the_nodes_certificate(
        plant: EdgeNode, tmp_path: Path) -> None:
    import asyncio

    pki = tmp_path / "node-pki"  # where the node keeps its client certificate
    cert, _ = asyncio.run(ensure_client_certificate(pki, "urn:rae-edge:alarms"))
    trust = tmp_path / "trusted"
    trust.mkdir()
    shutil.copy(cert, trust / "rae-edge.der")  # the plant's admin trusts that certificate
    server = PlcServer(free_port(), tmp_path / "plc", {TAG: ""}, trust_dir=trust,
                       users={"rae": "s3cret"})
    server.start()
    try:
        src = {"type": "opcua", "name": "plc-secure", "url": server.url,
               "security": "basic256sha256", "certificate_dir": str(pki),
               "server_certificate": str(server.certificate),
               "username": "rae", "password": "s3cret",
               "tags": [{"node_id": server.node_id(TAG), "machine_id": "press-1"}]}
        other = {**src, "name": "plc-stranger", "certificate_dir": str(tmp_path / "other")}
        with running(plant, [src, other]) as svc:
            good, bad = svc.sources
            assert good.wait_state("connected", 30), good.health()
            server.write(TAG, "E404")
            wait_until(lambda: alarm_incidents(plant), what="alarm over a secure channel")
            # a client certificate the server does not trust is refused
            wait_until(lambda: bad.health()["state"] == "down", what="untrusted refused")
            assert bad.health()["connects"] == 0
            assert (pki / "client-cert.der").read_bytes() == cert.read_bytes()
    finally:
        server.stop()


def test_alarm_condition_events_become_incidents(plant: EdgeNode, plc: PlcServer) -> None:
    src = _source(plc, tags=[], events=[{"source_name": "Press1", "machine_id": "press-1"}])
    with running(plant, [src]) as svc:
        assert svc.sources[0].wait_state("connected", 20)
        t = datetime.now(UTC).replace(microsecond=0)
        plc.condition("Press1", "PositionSensor", "E404 position sensor fault", True, 750, t)
        wait_until(lambda: alarm_pushes(plant), what="alarm push from an event")
        # The push goes out before the incident is written (it must reach the floor first):
        # wait for the write too.
        wait_until(lambda: alarm_incidents(plant), what="the event's incident")
        [inc] = alarm_incidents(plant)
        assert (inc.error_code, inc.occurred_at, inc.symptom) == (
            "E404", t, "E404 position sensor fault")
        assert alarm_pushes(plant)[0].payload["severity"] == 750
        plc.condition("Press1", "PositionSensor", "E404 position sensor fault", False, 750,
                      t + timedelta(seconds=9))
        wait_until(lambda: len(alarm_pushes(plant)) == 2, what="the condition's clear")
        assert alarm_pushes(plant)[1].payload["duration_s"] == 9.0
        # an event whose text names no code is set aside with the reason
        plc.condition("Press1", "Door", "door open", True)
        wait_until(lambda: svc.health()["sources"][0]["rejected"] == 1, what="rejected")
        assert "no error code in 'door open'" in svc.health()["sources"][0]["last_error"]
        settle(svc)
        assert len(alarm_incidents(plant)) == 1
