"""``WS /api/v1/push?line=L`` over a real WebSocket of the app: a tablet watching a
production line hears every machine of that line in its tenant (a machine alarm raised by a
real asyncua PLC included, and a machine added to the line after it connected), never a
machine of another line nor another tenant's line of the same name; ``?line=`` combines
with ``?machine_id=``; a replay from a cursor honours the line, and is on record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient

from rae_edge import config
from rae_edge.alarms.sim_plc import PlcServer
from rae_edge.audit import AuditLog
from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token
from rae_sync.domain import Machine, Role
from rae_tablet_api.app import create_app
from tests.fixtures.mosquitto import free_port
from tests.tablet_api.api_client import Api

TAG = "press-1.ErrorCode"
PRESS = {"id": "press-1", "name": "Hydraulic press 1", "qr_code": "P-1", "line": "Line A"}
LATHE = {"id": "lathe-2", "name": "CNC lathe 2", "qr_code": "L-2", "line": "Line B"}
MILL = {"id": "mill-3", "name": "Mill 3", "qr_code": "M-3", "line": "Line A"}  # added later
GLOBEX = {"id": "g-press", "name": "Globex press", "qr_code": "G-1", "line": "Line A"}


def inc(machine: str, day: int, symptom: str, code: str = "E9") -> dict[str, Any]:
    return {"machine_id": machine, "occurred_at": f"2026-11-{day:02d}T08:00:00+00:00",
            "error_code": code, "symptom": symptom, "action": "fixed"}


def _next(ws: Any) -> dict[str, Any]:
    while True:
        msg: dict[str, Any] = ws.receive_json(timeout=20)
        if msg["type"] != "ping":
            return msg


def _symptom(msg: dict[str, Any]) -> str:
    assert msg["type"] == "incident", msg
    return str(msg["data"]["incident"]["symptom"])


@pytest.fixture
def plc(tmp_path: Path) -> Iterator[PlcServer]:
    server = PlcServer(free_port(), tmp_path / "plc", {TAG: ""}, secure=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def api(tmp_path: Path, plc: PlcServer) -> Iterator[Api]:
    s = config.load(None, data_dir=tmp_path / "node", node={"tenant_id": "acme"},
                    alarms={"retry_min_s": 0.2, "sources": [{
                        "type": "opcua", "name": "plc-1", "url": plc.url, "security": "none",
                        "allow_insecure": True,
                        "tags": [{"node_id": plc.node_id(TAG), "machine_id": "press-1"}]}]})
    node = EdgeNode(s)
    # The alarm mapping is checked against the machines when the app starts.
    node.duck.upsert_machines([Machine(tenant_id="acme", **m) for m in (PRESS, LATHE)]
                              + [Machine(tenant_id="globex", **GLOBEX)])
    tokens = {f"{t}_{r.value}": create_token(node.duck, t, r, f"{t}-{r.value}")
              for t in ("acme", "globex") for r in Role}
    with TestClient(create_app(node)) as client:
        yield Api(node, client, tokens)


def test_a_line_socket_hears_its_line_only(api: Api, plc: PlcServer) -> None:
    tok = api.tokens["acme_technician"]
    gtok = api.tokens["globex_admin"]
    with api.client.websocket_connect(f"/api/v1/push?line=Line%20A&token={tok}") as a, \
            api.client.websocket_connect(f"/api/v1/push?line=Line%20B&token={tok}") as b, \
            api.client.websocket_connect(f"/api/v1/push?line=Line%20A&token={gtok}") as g:
        hello = a.receive_json(timeout=20)
        assert hello["type"] == "hello" and hello["lines"] == ["Line A"]
        assert hello["machine_ids"] == []
        assert b.receive_json(timeout=20)["lines"] == ["Line B"]
        assert g.receive_json(timeout=20)["lines"] == ["Line A"]
        # Noise first: line B's lathe, and globex's own "Line A" press.
        api.ok(api.post("/incidents", [inc("lathe-2", 1, "Chuck jam")]))
        api.ok(api.post("/incidents", [inc("g-press", 1, "Globex secret leak")],
                        "globex_admin"))
        api.ok(api.post("/incidents", [inc("press-1", 2, "Ram stops mid-stroke")]))
        # Messages come in cursor order: the first line-A message is the press's.
        assert _symptom(_next(a)) == "Ram stops mid-stroke"
        assert _symptom(_next(b)) == "Chuck jam"
        assert _symptom(_next(g)) == "Globex secret leak"
        # A machine added to line A after the socket connected is heard without a reconnect.
        api.ok(api.post("/machines", [MILL]))
        api.ok(api.post("/incidents", [inc("mill-3", 3, "Spindle overheats")]))
        got = _next(a)
        assert got["machine_id"] == "mill-3" and _symptom(got) == "Spindle overheats"
        # The PLC raises E404 on press-1: the line-A tablet gets the alarm push.
        plc.write(TAG, "E404")
        seen = [_next(a)]
        while seen[-1]["type"] != "alarm":
            seen.append(_next(a))
        alarm = seen[-1]
        assert alarm["machine_id"] == "press-1" and alarm["data"]["error_code"] == "E404"
        assert alarm["data"]["line"] == "Line A" and alarm["data"]["state"] == "active"
        # Before it, at most the incident the alarm opened, on the same machine.
        assert all(m["machine_id"] == "press-1" and m["type"] == "incident" for m in seen[:-1])
        # Line B and globex heard none of it: their next message is the next one of theirs.
        api.ok(api.post("/incidents", [inc("lathe-2", 4, "Coolant low")]))
        api.ok(api.post("/incidents", [inc("g-press", 4, "Globex second")], "globex_admin"))
        assert _symptom(_next(b)) == "Coolant low"
        assert _symptom(_next(g)) == "Globex second"


def test_line_and_machine_combined_replay_http_form_and_audit(api: Api) -> None:
    api.ok(api.post("/machines", [MILL]))
    api.ok(api.post("/incidents", [inc("press-1", 1, "Press oil leak")]))
    api.ok(api.post("/incidents", [inc("lathe-2", 2, "Lathe chuck jam")]))
    api.ok(api.post("/incidents", [inc("mill-3", 3, "Mill spindle hot")]))
    api.ok(api.post("/incidents", [inc("g-press", 3, "Globex leak")], "globex_admin"))
    tok = api.tokens["acme_technician"]
    before = len(AuditLog(api.node.duck).entries("acme"))
    # Line B plus the press by id; not the mill (line A), not globex.
    url = f"/api/v1/push?line=Line%20B&machine_id=P-1&cursor=0&token={tok}"
    with api.client.websocket_connect(url) as ws:
        hello = ws.receive_json(timeout=20)
        assert hello["lines"] == ["Line B"] and hello["machine_ids"] == ["press-1"]
        replayed = [_next(ws) for _ in range(2)]
        assert [_symptom(m) for m in replayed] == ["Press oil leak", "Lathe chuck jam"]
        api.ok(api.post("/incidents", [inc("mill-3", 5, "Mill again")]))
        api.ok(api.post("/incidents", [inc("lathe-2", 5, "Lathe live")]))
        live = _next(ws)
        assert _symptom(live) == "Lathe live"  # the mill's went by unheard
    entries = [e for e in AuditLog(api.node.duck).entries("acme")[before:]
               if e.action == "WS /api/v1/push"]
    assert [e.resource for e in entries] == ["replay after cursor 0: 2 messages",
                                             f"push incident cursor {live['cursor']}"]
    ids = [m["data"]["incident"]["id"] for m in replayed]
    assert [i for i in entries[0].memory_ids if i in ids] == ids
    # The HTTP form answers the same for the same filter.
    page = api.ok(api.get("/push/messages", "acme_technician", line="Line B",
                          machine_id="press-1", cursor=0))
    assert [m["cursor"] for m in page["messages"]] == [
        *[m["cursor"] for m in replayed], live["cursor"]]
    only_a = api.ok(api.get("/push/messages", "acme_technician", line="Line A", cursor=0))
    assert [m["machine_id"] for m in only_a["messages"]] == [
        "press-1", "mill-3", "mill-3"]


def test_a_bad_line_is_refused_with_its_reason(api: Api) -> None:
    tok = api.tokens["acme_technician"]
    long = "L" * 129
    with pytest.raises(WebSocketDisconnect) as info, api.client.websocket_connect(
            f"/api/v1/push?line={long}&token={tok}") as ws:
        ws.receive_json(timeout=20)
    assert info.value.code == 4422 and "line name over 128" in str(info.value.detail)
    r = api.get("/push/messages", "acme_technician", line=long)
    assert r.status_code == 422 and "line name over 128" in r.json()["error"]["message"]
