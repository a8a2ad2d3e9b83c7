"""A node with two tenants' data for the security suite.

Tenant ``acme`` (the node's own) holds marked data: machine names, QR codes, incident
symptoms and correction texts that no other caller may ever see. Tenant ``globex`` is the
intruder. Data goes in through the API where the route exists (so the real memory service
indexes it) and straight into the stores otherwise.
"""

from __future__ import annotations

import hashlib
import io
import json
import wave
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from rae_edge import config
from rae_edge.drift import open_alerts
from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token, hash_token, revoke_token
from rae_sync.domain import Correction, DocumentChunk, Incident, Machine, Role
from rae_tablet_api.app import create_app
from rae_tablet_api.auth import limiter

ACME, GLOBEX = "acme", "globex"
ACME_MACHINE = "ACME-PRESS-1"
ACME_MACHINE_2 = "ACME-PRESS-2"
GLOBEX_MACHINE = "GLX-LATHE-1"
ACME_SECRETS = [  # words the intruder never sends, so finding them in an answer is a leak
    "Zephyrine stamping press", "QR-ACME-7731", "QR-ACME-7732",
    "quasar valve chatter near the flywheel", "ozymandias coupling sheared",
    "the torsion gauge was loose all along",
]


@dataclass
class SecureNode:
    """The node, an HTTP client on its app and a token for each kind of caller."""

    node: EdgeNode
    client: TestClient[Any]
    tokens: dict[str, str]
    acme_ids: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}

    def acme_snapshot(self) -> str:
        """A digest of everything tenant acme holds (audit log and outbox aside): a write
        that reached acme's data changes it."""
        duck = self.node.duck
        parts: list[Any] = []
        for table in ("machines", "incidents", "corrections", "documents", "tokens"):
            cols = [r[0] for r in duck.query(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position", [table])]
            if "tenant_id" not in cols:
                continue
            order = ", ".join(c for c in ("id", "hash") if c in cols) or "1"
            parts.append(duck.query(f"SELECT * FROM {table} WHERE tenant_id = ? ORDER BY {order}",
                                    [ACME]))
        parts.append(self.node.lance.count(f"tenant_id = '{ACME}'"))
        return hashlib.sha256(repr(parts).encode()).hexdigest()


def silent_wav(seconds: float = 0.5) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x00" * int(16000 * seconds))
    return buf.getvalue()


def _post_or(client: TestClient[Any], path: str, token: str, body: Any) -> Any | None:
    r = client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    if r.status_code in (404, 405):
        return None
    assert r.status_code < 300, (path, r.status_code, r.text)
    return r.json()


def _seed(sn: SecureNode) -> None:
    node, client = sn.node, sn.client
    for tenant, machines in {
        ACME: [(ACME_MACHINE, "Zephyrine stamping press", "QR-ACME-7731"),
               (ACME_MACHINE_2, "Zephyrine stamping press two", "QR-ACME-7732")],
        GLOBEX: [(GLOBEX_MACHINE, "Globex lathe", "QR-GLX-1")],
    }.items():
        body = [{"id": i, "name": n, "qr_code": q, "site": "plant-1"} for i, n, q in machines]
        if _post_or(client, "/api/v1/machines", sn.tokens[f"{tenant}_admin"], body) is None:
            node.duck.upsert_machines([Machine(tenant_id=tenant, **b) for b in body])
    incidents = {
        ACME: [(ACME_MACHINE, "E404", "quasar valve chatter near the flywheel",
                "replaced valve seal"),
               (ACME_MACHINE_2, "E404", "ozymandias coupling sheared", "replaced coupling")],
        GLOBEX: [(GLOBEX_MACHINE, "E404", "spindle noise on the lathe", "greased spindle")],
    }
    for tenant, rows in incidents.items():
        body = [{"machine_id": m, "occurred_at": "2024-03-01T08:00:00+00:00", "error_code": c,
                 "symptom": s, "action": a} for m, c, s, a in rows]
        if _post_or(client, "/api/v1/incidents", sn.tokens[f"{tenant}_admin"], body) is None:
            node.duck.insert_incidents([Incident(tenant_id=tenant, **b) for b in body])
    acme_inc = node.duck.incidents_for_machine(ACME, ACME_MACHINE)[0]
    sn.acme_ids["incident"] = acme_inc.id
    body = {"machine_id": ACME_MACHINE, "text": "the torsion gauge was loose all along",
            "target_id": acme_inc.id}
    got = _post_or(client, "/api/v1/corrections", sn.tokens["acme_admin"], body)
    if got is None:
        c = Correction(tenant_id=ACME, author="seed", **body)
        node.memory.record_correction(c)
        got = {"id": c.id}
    sn.acme_ids["correction"] = str(got.get("id", ""))
    # A second machine's correction of the same code, and the manual's step for it: acme
    # now has a drift alert too.
    inc2 = node.duck.incidents_for_machine(ACME, ACME_MACHINE_2)[0]
    c2 = Correction(tenant_id=ACME, machine_id=ACME_MACHINE_2, author="seed",
                    text="the flux regulator was never the cause", target_id=inc2.id)
    node.indexer.index_chunks([DocumentChunk(
        tenant_id=ACME, id="man_acme_e404", document_id="doc_acme_press",
        section="9.1 E404", text="E404: 1. Replace the flux regulator cartridge.",
        error_codes=("E404",))])
    node.memory.record_correction(c2)  # the node's write path: drift is recomputed
    alerts = open_alerts(node, ACME)
    assert len(alerts) == 1, alerts
    sn.acme_ids["drift_alert"] = alerts[0].id
    sn.secrets = [*ACME_SECRETS, "flux regulator", "man_acme_e404", c2.id,
                  *(v for v in sn.acme_ids.values() if v)]


@contextmanager
def secure_node_for(data_dir: Path, extra_routes: Sequence[Any] = ()) -> Iterator[SecureNode]:
    """A seeded node and a client on its real app (plus ``extra_routes``, for tests that
    prove the suite catches a leaky route)."""
    settings = config.load(None, data_dir=data_dir, node={"tenant_id": ACME})
    node = EdgeNode(settings)
    tokens = {f"{t}_{r.value}": create_token(node.duck, t, r, f"{t}-{r.value}")
              for t in (ACME, GLOBEX) for r in Role}
    tokens["revoked"] = create_token(node.duck, ACME, Role.ADMIN, "revoked-admin")
    assert revoke_token(node.duck, hash_token(tokens["revoked"]))
    app = create_app(node)
    for route in extra_routes:
        app.register(route)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            sn = SecureNode(node, client, tokens)
            _seed(sn)
            yield sn
    finally:
        node.close()
        clear_auth_failures()


def clear_auth_failures() -> None:
    """The failed-auth limiter is per process and per client address, and every TestClient
    is the same address: a suite that sends many bad tokens must not leave later tests
    (or its own next calls) rate-limited."""
    limiter._fails.clear()


@pytest.fixture
def secure_node(tmp_path: Path) -> Iterator[SecureNode]:
    with secure_node_for(tmp_path / "node") as sn:
        yield sn


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


@pytest.fixture(autouse=True)
def _fresh_auth_limiter() -> Iterator[None]:
    clear_auth_failures()
    yield
    clear_auth_failures()
