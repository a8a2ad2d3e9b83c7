"""The ``alarms`` section is checked at start: a wrong key, value or mapping is an error
that names it; a node with a wrong mapping does not start; ``/health`` shows each
source's state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from pydantic import ValidationError

from rae_edge import config
from rae_edge.alarms.config import OpcUaSourceSettings
from rae_edge.alarms.service import AlarmConfigError, AlarmService
from rae_edge.node import EdgeNode
from rae_tablet_api.app import create_app
from tests.edge.alarms.conftest import wait_until
from tests.fixtures.mosquitto import free_port

OPCUA: dict[str, Any] = {
    "type": "opcua", "name": "plc-1", "url": "opc.tcp://127.0.0.1:4840",
    "tags": [{"node_id": "ns=2;s=press-1.ErrorCode", "machine_id": "press-1"}]}
SPB: dict[str, Any] = {
    "type": "sparkplug", "name": "spb-1", "broker_url": "mqtt://127.0.0.1:1883",
    "group_id": "plant-1",
    "metrics": [{"edge_node": "gw", "metric": "Alarms/Code", "machine_id": "press-1"}]}


def _load(tmp_path: Path, sources: list[dict[str, Any]], **alarms: Any) -> config.EdgeSettings:
    f = tmp_path / "node.yaml"
    f.write_text(json.dumps({"data_dir": str(tmp_path / "node"),
                             "node": {"tenant_id": "acme"},
                             "alarms": {"sources": sources, **alarms}}))
    return config.load(f)


def _error(tmp_path: Path, sources: list[dict[str, Any]], **alarms: Any) -> str:
    with pytest.raises(ValidationError) as err:
        _load(tmp_path, sources, **alarms)
    return str(err.value)


def test_a_valid_section_loads(tmp_path: Path) -> None:
    s = _load(tmp_path, [OPCUA, SPB])
    assert [src.type for src in s.alarms.sources] == ["opcua", "sparkplug"]
    opcua = s.alarms.sources[0]
    assert isinstance(opcua, OpcUaSourceSettings)
    assert opcua.security == "basic256sha256"  # secure unless told


@pytest.mark.parametrize(("change", "where", "says"), [
    ({"tags": [{"node_id": "ns=2;x=bad", "machine_id": "press-1"}]},
     "alarms.sources.0.opcua.tags.0.node_id", "not an OPC UA node id"),
    ({"security": "none"}, "alarms.sources.0.opcua", "allow_insecure"),
    ({"url": "http://plc:4840"}, "alarms.sources.0.opcua.url", "opc.tcp://"),
    ({"tags": [{"node_id": "ns=2;s=x", "machine_id": "press-1", "colour": "red"}]},
     "alarms.sources.0.opcua.tags.0.colour", "Extra inputs are not permitted"),
    ({"tags": [{"node_id": "ns=2;s=x", "machine_id": "press-1", "code_format": "E{val}"}]},
     "alarms.sources.0.opcua.tags.0.code_format", "may use only {value}"),
    ({"tags": [], "events": []}, "alarms.sources.0.opcua", "at least one of tags or events"),
    ({"type": "modbus"}, "alarms.sources.0", "'opcua', 'sparkplug'"),
])
def test_a_wrong_opcua_key_is_named(tmp_path: Path, change: dict[str, Any], where: str,
                                    says: str) -> None:
    err = _error(tmp_path, [{**OPCUA, **change}])
    assert where in err.replace("\n", " ") and says in err


def test_wrong_sparkplug_and_section_keys_are_named(tmp_path: Path) -> None:
    err = _error(tmp_path, [{**SPB, "broker_url": "mqtt://plc.example:1883"}])
    assert "alarms.sources.0.sparkplug" in err and "mqtts://" in err
    err = _error(tmp_path, [{**SPB, "metrics": SPB["metrics"] * 2}])
    assert "gw/Alarms/Code is mapped twice" in err
    err = _error(tmp_path, [OPCUA, {**OPCUA}])
    assert "two sources are named 'plc-1'" in err
    err = _error(tmp_path, [OPCUA], queue_sise=10)
    assert "alarms.queue_sise" in err


def test_an_unknown_machine_is_named_and_the_node_does_not_start(tmp_path: Path) -> None:
    from rae_sync.domain import Machine

    spb = {**SPB, "metrics": [*SPB["metrics"], {"edge_node": "gw", "metric": "Other",
                                                "machine_id": "press-9"}]}
    settings = _load(tmp_path, [spb])
    node = EdgeNode(settings)
    try:
        node.duck.upsert_machines([Machine(tenant_id="acme", id="press-1", name="Press 1",
                                           qr_code="P1")])
        with pytest.raises(AlarmConfigError) as err:
            AlarmService(node.alarm_deps, settings.alarms).check()
        assert str(err.value).startswith(
            "alarms.sources.0.metrics.1.machine_id: unknown machine 'press-9'")
        app = create_app(node)
        with pytest.raises(BaseExceptionGroup) as group, TestClient(app):
            pass  # the app's start-up fails on the check
        assert group.group_contains(AlarmConfigError, match="unknown machine 'press-9'")
    finally:
        node.close()


def test_health_shows_a_source_that_is_down(tmp_path: Path) -> None:
    from rae_edge.tokens import create_token
    from rae_sync.domain import Machine, Role

    port = free_port()  # nothing listens there
    src = {**OPCUA, "url": f"opc.tcp://127.0.0.1:{port}", "security": "none",
           "allow_insecure": True}
    settings = _load(tmp_path, [src], retry_min_s=0.2, retry_max_s=0.4)
    node = EdgeNode(settings)
    node.duck.upsert_machines([Machine(tenant_id="acme", id="press-1", name="Press 1",
                                       qr_code="P1")])
    with TestClient(create_app(node)) as client:
        def down() -> dict[str, Any] | None:
            body = client.get("/api/v1/health").json()
            src = body["alarms"]["sources"][0]
            return body if src["state"] == "down" and src["connect_attempts"] >= 2 else None

        body = wait_until(down, what="source down, retried")
        src_health = body["alarms"]["sources"][0]
        assert src_health["name"] == "plc-1" and src_health["type"] == "opcua"
        assert src_health["retry_in_s"] is not None and src_health["connects"] == 0
        assert body["alarms"]["queue"]["dropped"] == 0
        assert "last_error" not in src_health  # /health needs no token: no error texts
        assert client.get("/api/v1/alarms").status_code == 401
        token = create_token(node.duck, "acme", Role.TECHNICIAN, "tablet")
        got = client.get("/api/v1/alarms", headers={"Authorization": f"Bearer {token}"})
        assert got.status_code == 200
        detail = got.json()
        assert "ConnectionRefusedError" in detail["health"]["sources"][0]["last_error"] or \
            "Errno 111" in detail["health"]["sources"][0]["last_error"]
        assert detail["alarms"] == [] and detail["rejected"] == []
