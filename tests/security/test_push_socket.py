"""The push WebSocket (not in the OpenAPI document, so outside the HTTP sweep): refused
without a valid token, and a socket of another tenant never receives this tenant's pushes."""

from __future__ import annotations

import queue

import pytest
from litestar.exceptions import WebSocketDisconnect

from tests.security.conftest import ACME_MACHINE, SecureNode


def _close_code(sn: SecureNode, url: str) -> int | None:
    try:
        with sn.client.websocket_connect(url) as ws:
            ws.receive_json(timeout=5)
    except WebSocketDisconnect as exc:
        return exc.code
    return None


def test_push_socket_refuses_and_isolates(secure_node: SecureNode) -> None:
    sn = secure_node
    spec = sn.client.get("/api/v1/schema/openapi.json").json()
    if "/api/v1/push/messages" not in spec["paths"]:
        pytest.skip("no push route yet")
    base = "/api/v1/push"
    assert _close_code(sn, base) == 4401
    assert _close_code(sn, f"{base}?token={sn.tokens['revoked']}") == 4401
    assert _close_code(sn, f"{base}?token=rae_notatoken") == 4401
    # Another tenant cannot name this tenant's machine ...
    assert _close_code(sn, f"{base}?token={sn.tokens['globex_admin']}"
                           f"&machine_id={ACME_MACHINE}") == 4404
    # ... and its tenant-wide socket gets nothing when this tenant's machine is scanned.
    with sn.client.websocket_connect(f"{base}?token={sn.tokens['globex_admin']}") as intruder, \
            sn.client.websocket_connect(f"{base}?token={sn.tokens['acme_technician']}"
                                        f"&machine_id={ACME_MACHINE}") as owner:
        assert intruder.receive_json(timeout=5)["type"] == "hello"
        assert owner.receive_json(timeout=5)["type"] == "hello"
        r = sn.client.get(f"/api/v1/machines/{ACME_MACHINE}/briefing",
                          headers=sn.headers("acme_technician"))
        assert r.status_code == 200
        got = owner.receive_json(timeout=10)
        assert got["type"] == "briefing" and got["machine_id"] == ACME_MACHINE
        leaked = []
        try:
            while True:
                msg = intruder.receive_json(timeout=1.5)
                if msg.get("type") != "ping":
                    leaked.append(msg)
        except (queue.Empty, TimeoutError):
            pass
        assert leaked == []
