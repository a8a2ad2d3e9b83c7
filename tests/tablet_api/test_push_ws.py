"""Proactive push over a real WebSocket of the app: a tablet watching a machine hears about
new incidents (with the most similar past incident and its corrected fix), corrections and
scans; never another machine's or tenant's; and after a reconnect with its cursor it gets
exactly what it missed, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.exceptions import WebSocketDisconnect

from rae_edge.audit import AuditLog
from rae_edge.tokens import hash_token
from tests.tablet_api.api_client import Api, api_for

PRESS = {"id": "PRESS-07", "name": "Hydraulic press 7", "qr_code": "QR:PLANT1:PRESS-07"}
LATHE = {"id": "LATHE-02", "name": "CNC lathe 2", "qr_code": "QR:PLANT1:LATHE-02"}


def inc(machine: str, day: int, symptom: str, action: str, code: str = "E404") -> dict[str, Any]:
    return {"machine_id": machine, "occurred_at": f"2026-11-{day:02d}T08:00:00+00:00",
            "error_code": code, "symptom": symptom, "action": action}


def _next(ws: Any) -> dict[str, Any]:
    while True:
        msg: dict[str, Any] = ws.receive_json(timeout=20)
        if msg["type"] != "ping":
            return msg


def test_push_on_incident_correction_and_scan_then_resume(tmp_path: Path) -> None:
    with api_for(tmp_path) as api:
        api.ok(api.post("/machines", [PRESS, LATHE]))
        api.ok(api.post("/machines", [PRESS], "globex_admin"))  # same id, other tenant
        tok = api.tokens["acme_technician"]
        url = f"/api/v1/push?machine_id=QR:PLANT1:PRESS-07&token={tok}"
        with api.client.websocket_connect(url) as ws:
            hello = ws.receive_json(timeout=20)
            assert hello["type"] == "hello" and hello["machine_ids"] == ["PRESS-07"]
            first = api.ok(api.post("/incidents", [inc(
                "PRESS-07", 12, "Ram stops mid-stroke, light curtain fault",
                "Replaced light curtain sensor X")]))["ids"][0]
            m1 = _next(ws)
            assert m1["type"] == "incident" and m1["data"]["incident"]["id"] == first
            assert m1["data"]["similar"] is None  # nothing before it
            cor = api.ok(api.post("/corrections", {"machine_id": "PRESS-07", "target_id": first,
                                                   "text": "Sensor X was actually loose"},
                                  "acme_technician"))
            m2 = _next(ws)
            assert m2["type"] == "correction" and m2["data"]["correction"]["id"] == cor["id"]
            assert m2["data"]["target_id"] == first
            # Noise the socket must not hear: another machine, another tenant.
            api.ok(api.post("/incidents", [inc("LATHE-02", 13, "Light curtain fault", "x")]))
            api.ok(api.post("/incidents", [inc("PRESS-07", 13, "Light curtain fault", "y")],
                            "globex_admin"))
            second = api.ok(api.post("/incidents", [inc(
                "PRESS-07", 20, "Light curtain fault again, ram blocked", "Reset")]))["ids"][0]
            m3 = _next(ws)
            assert m3["type"] == "incident" and m3["data"]["incident"]["id"] == second
            sim = m3["data"]["similar"]
            assert sim["id"] == first
            assert sim["fix"] == "Sensor X was actually loose"  # the correction wins
            assert sim["action"] == "Replaced light curtain sensor X"
            assert sim["superseded_by"] == [cor["id"]]
            api.ok(api.get("/machines/PRESS-07/briefing", "acme_technician"))
            m4 = _next(ws)
            assert m4["type"] == "briefing" and "Sensor X was actually loose" in \
                m4["data"]["summary"]
            cursors = [m["cursor"] for m in (m1, m2, m3, m4)]
            assert cursors == sorted(cursors)
            last = m4["cursor"]
        # Offline: three messages for the press (one for the lathe) while disconnected.
        api.ok(api.post("/incidents", [inc("PRESS-07", 21, "Hydraulic oil leak", "Tightened")]))
        api.ok(api.post("/incidents", [inc("LATHE-02", 21, "Chuck jam", "Cleared", "E9")]))
        api.ok(api.post("/corrections", {"machine_id": "PRESS-07", "text": "Oil is ISO VG 46"},
                        "acme_technician"))
        api.ok(api.get("/briefing", "acme_technician", code="PRESS-07"))
        with api.client.websocket_connect(f"{url}&cursor={last}") as ws:
            assert ws.receive_json(timeout=20)["gap"] is False
            missed = [_next(ws) for _ in range(3)]
            assert [m["type"] for m in missed] == ["incident", "correction", "briefing"]
            assert all(m["machine_id"] == "PRESS-07" and m["cursor"] > last for m in missed)
            api.ok(api.post("/corrections", {"machine_id": "PRESS-07", "text": "live one"},
                            "acme_technician"))
            live = _next(ws)
            assert live["data"]["text"] == "live one"
            assert live["cursor"] > missed[-1]["cursor"]  # no replay of what was sent
        # The HTTP form returns the same messages from the same cursor.
        page = api.ok(api.get("/push/messages", "acme_technician", machine_id="PRESS-07",
                              cursor=last))
        assert [m["cursor"] for m in page["messages"]] == [
            *[m["cursor"] for m in missed], live["cursor"]]
        assert api.ok(api.get("/push/messages", "globex_admin", cursor=0))["messages"][0][
            "data"]["incident"]["action"] == "y"  # globex sees only its own


def test_one_socket_watches_several_machines(tmp_path: Path) -> None:
    with api_for(tmp_path) as api:
        api.ok(api.post("/machines", [PRESS, LATHE]))
        tok = api.tokens["acme_technician"]
        with api.client.websocket_connect(
                f"/api/v1/push?machine_id=PRESS-07&machine_id=LATHE-02&token={tok}") as ws:
            assert ws.receive_json(timeout=20)["machine_ids"] == ["LATHE-02", "PRESS-07"]
            api.ok(api.post("/incidents", [inc("LATHE-02", 1, "Chuck jam", "Cleared", "E9"),
                                           inc("PRESS-07", 2, "Oil leak", "Tightened", "E1")]))
            got = {_next(ws)["machine_id"], _next(ws)["machine_id"]}
            assert got == {"PRESS-07", "LATHE-02"}


def _refused(api: Api, url: str) -> WebSocketDisconnect:
    with pytest.raises(WebSocketDisconnect) as info, api.client.websocket_connect(url) as ws:
        ws.receive_json(timeout=20)
    return info.value


def test_socket_refuses_bad_token_weak_input_and_unknown_machine(tmp_path: Path) -> None:
    with api_for(tmp_path) as api:
        api.ok(api.post("/machines", [PRESS]))
        assert _refused(api, "/api/v1/push?machine_id=PRESS-07&token=nope").code == 4401
        assert _refused(api, "/api/v1/push?machine_id=PRESS-07").code == 4401
        tok = api.tokens["acme_technician"]
        unknown = _refused(api, f"/api/v1/push?machine_id=GHOST&token={tok}")
        assert unknown.code == 4404 and "GHOST" in str(unknown.detail)
        # globex cannot watch acme's machine, even by its id.
        gtok = api.tokens["globex_admin"]
        assert _refused(api, f"/api/v1/push?machine_id=PRESS-07&token={gtok}").code == 4404


def test_replay_and_live_pushes_are_audited_with_their_memory_ids(tmp_path: Path) -> None:
    """A socket's reads are on record like HTTP reads: the replay of ``?cursor=0`` (the
    tenant's history) as one entry with every memory id it sent, each live push as one."""
    with api_for(tmp_path) as api:
        api.ok(api.post("/machines", [PRESS, LATHE]))
        ids = api.ok(api.post("/incidents", [inc("PRESS-07", 1, "Oil leak", "Tightened"),
                                             inc("PRESS-07", 2, "Ram stops", "Reset"),
                                             inc("LATHE-02", 3, "Chuck jam", "Cleared")]))["ids"]
        cor = api.ok(api.post("/corrections", {"machine_id": "PRESS-07", "target_id": ids[0],
                                               "text": "The seal was cut"}, "acme_technician"))
        tok = api.tokens["acme_technician"]
        before = len(AuditLog(api.node.duck).entries("acme"))
        with api.client.websocket_connect(f"/api/v1/push?cursor=0&token={tok}") as ws:
            assert ws.receive_json(timeout=20)["type"] == "hello"
            replayed = [_next(ws) for _ in range(4)]  # 3 incidents + 1 correction
            assert [m["type"] for m in replayed] == ["incident"] * 3 + ["correction"]
            live_id = api.ok(api.post("/corrections", {"machine_id": "LATHE-02",
                                                       "text": "Chuck jaws worn"},
                                      "acme_technician"))["id"]
            live = _next(ws)
            assert live["data"]["correction"]["id"] == live_id
        pushed = [e for e in AuditLog(api.node.duck).entries("acme")[before:]
                  if e.action == "WS /api/v1/push"]
        assert [e.resource for e in pushed] == [
            "replay after cursor 0: 4 messages",
            f"push correction cursor {live['cursor']}"]
        replay, one = pushed
        assert replay.actor == f"acme-technician#{hash_token(tok)[:12]}"
        # Every incident and the correction that went out, in the order they went out.
        assert [i for i in replay.memory_ids if i in {*ids, cor["id"]}] == [*ids, cor["id"]]
        assert live_id in one.memory_ids and not set(ids) & set(one.memory_ids)
        assert AuditLog(api.node.duck).verify().ok


def test_a_socket_read_that_cannot_be_recorded_is_not_sent(tmp_path: Path) -> None:
    with api_for(tmp_path) as api:
        api.ok(api.post("/machines", [PRESS]))
        api.ok(api.post("/incidents", [inc("PRESS-07", 1, "Oil leak secret", "Tightened")]))
        tok = api.tokens["acme_technician"]
        api.node.duck.query("DROP TABLE audit_log")  # the log is gone: reads must stop
        with pytest.raises(WebSocketDisconnect) as info, api.client.websocket_connect(
                f"/api/v1/push?cursor=0&token={tok}") as ws:
            assert ws.receive_json(timeout=20)["type"] == "hello"
            ws.receive_json(timeout=20)  # no message: the close comes instead
        assert info.value.code == 1011
