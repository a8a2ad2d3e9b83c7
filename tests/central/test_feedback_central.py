"""Verdicts ("this fixed it" / "not relevant") at central, with a real ingest worker on the
application's role (row-level security), a real PostgreSQL and mosquitto, and simulated
edges with enrolled identities (:mod:`tests.central.edge_sim`):

- a verdict from node A is stored once, however often it arrives (a repeated message id,
  the same message in one batch, a re-send after a lost ack), with the plant of the
  signed envelope whatever the payload claims;
- it is fanned out once to the tenant's other node, sealed by central and naming A as
  its origin, never back to A and never to another tenant; its down row stays until B
  acks applying it;
- a verdict naming another tenant is dead-lettered; the console's read
  (``GET /api/v1/admin/feedback``, the overview) is scoped to a tenant token and audited.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from litestar.testing import TestClient

from rae_central.admin.app import create_app
from rae_central.feedback import recent_feedback
from rae_central.worker import IngestWorker
from rae_sync.domain import Feedback, Verdict
from rae_sync.envelope import Envelope
from rae_sync.messages import FeedbackMsg
from tests.central.conftest import Central
from tests.central.edge_sim import EdgeSim, wait_for


def _verdict(edge: EdgeSim, verdict: Verdict, *, tenant: str | None = None,
             origin_node: str | None = None, query: str | None = None) -> Envelope:
    fb = Feedback(tenant_id=tenant or edge.node[0], memory_id="inc_twin_2", verdict=verdict,
                  query=query, machine_id="press-7", author="ana#1",
                  origin_node=origin_node or f"{edge.node[1]}/{edge.node[2]}")
    env = edge.envelope(FeedbackMsg(feedback=fb))
    edge.outbox[env.message_id] = env
    return env


def _ids(central: Central, tenant: str = "acme") -> list[str]:
    """Verdict ids in Postgres, duplicates kept."""
    with central.store.tx(None) as conn:  # the owner's view: every tenant
        return [r[0] for r in conn.execute(sa.text(
            "SELECT id FROM feedback WHERE tenant_id = :t"), {"t": tenant})]


def test_a_verdict_is_stored_once_and_fanned_out_once_to_the_other_plant(
        central: Central, worker: IngestWorker) -> None:
    a, b, x = central.edge("a"), central.edge("b"), central.edge("x")
    try:
        # A claims to speak for another plant: central keeps the signed sender's plant
        fixed = _verdict(a, Verdict.FIXED, origin_node="plant-7/node-z",
                         query="ram drifts down under load")
        a.send([fixed, fixed])  # the same message twice in a row (one batch, or two)
        a.deliver_all(timeout=30)
        a.send([fixed])  # and again after its ack (the edge lost the ack)
        wait_for(lambda: len(b.received(FeedbackMsg)) >= 1, 30, "the verdict at B")
        time.sleep(2.0)  # the repeats and a fan-out sweep have had their chance
        assert _ids(central) == [fixed.message_as(FeedbackMsg).feedback.id]
        assert central.store.count("feedback") == 1
        [down] = b.received(FeedbackMsg)
        msg = down.message_as(FeedbackMsg)
        assert msg.feedback.id == fixed.message_as(FeedbackMsg).feedback.id
        assert msg.feedback.verdict is Verdict.FIXED
        assert msg.feedback.query == "ram drifts down under load"
        assert msg.feedback.origin_node == "plant-1/node-a"
        assert msg.origin is not None and (msg.origin.site_id, msg.origin.node_id) == (
            "plant-1", "node-a")
        assert down.node == b.node and down.seq in central.store.pending_down(b.node)
        assert a.received(FeedbackMsg) == [] and x.received(FeedbackMsg) == []
        with central.store.tx(None) as conn:
            rows = conn.execute(sa.text("SELECT origin_site, origin_node, author, verdict, "
                                        "memory_id FROM feedback")).all()
        assert [tuple(r) for r in rows] == [("plant-1", "node-a", "ana#1", "fixed",
                                             "inc_twin_2")]

        # B applies it and acks: its down row goes; nothing is sent again
        b.ack_applied([down])
        wait_for(lambda: central.store.pending_down(b.node) == [], 30, "B's row acked")

        # a "not relevant" from B goes to A (and only to A)
        nope = _verdict(b, Verdict.NOT_RELEVANT, query="pump leaking oil")
        b.deliver_all(timeout=30)
        wait_for(lambda: len(a.received(FeedbackMsg)) == 1, 30, "B's verdict at A")
        got = a.received(FeedbackMsg)[0].message_as(FeedbackMsg).feedback
        assert (got.id, got.verdict, got.origin_node) == (
            nope.message_as(FeedbackMsg).feedback.id, Verdict.NOT_RELEVANT, "plant-2/node-b")
        assert len(b.received(FeedbackMsg)) == 1 and x.received(FeedbackMsg) == []
        assert sorted(_ids(central)) == sorted(
            e.message_as(FeedbackMsg).feedback.id for e in (fixed, nope))

        # a verdict naming another tenant is refused with the reason, and not fanned out
        dead_before = central.store.count("dead_letters")
        forged = _verdict(x, Verdict.FIXED, tenant="acme")
        x.send([forged])
        wait_for(lambda: central.store.count("dead_letters") > dead_before, 30,
                 "the forged verdict dead-lettered")
        reasons = [d["reason"] for d in central.store.dead_letters(10)]
        assert any("feedback" in r and "globex" in r for r in reasons), reasons
        assert _ids(central, "globex") == [] and len(_ids(central)) == 2
    finally:
        for e in (a, b, x):
            e.close()

    # the console's read side, on the application's role: scoped to a tenant
    app = central.app_store()
    try:
        seen = recent_feedback(app, "acme")
        assert [(r["verdict"], r["origin"]) for r in seen] == [
            ("not_relevant", "plant-2/node-b"), ("fixed", "plant-1/node-a")]
        assert recent_feedback(app, "globex") == []
        assert recent_feedback(app, None) == []  # no tenant: nothing at all
        tokens = {"acme": "acme-console-token", "globex": "globex-console-token"}
        with TestClient(create_app(app, "operator-token", tenant_tokens=tokens)) as c:
            def get(path: str, token: str) -> Any:
                r = c.get(path, headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 200, r.text
                return r.json()

            assert get("/api/v1/admin/feedback", "operator-token") == []  # no content
            shown = get("/api/v1/admin/feedback", "acme-console-token")
            assert [f["verdict"] for f in shown] == ["not_relevant", "fixed"]
            assert get("/api/v1/admin/feedback", "globex-console-token") == []
            ov = get("/api/v1/admin/overview", "acme-console-token")
            assert [f["id"] for f in ov["feedback"]] == [
                f["id"] for f in shown]
        reads = [e for e in central.store.admin_audit("acme")
                 if e["action"] == "read.feedback"]
        assert len(reads) == 2 and sorted(reads[0]["details"]["ids"]) == sorted(
            f["id"] for f in shown)
    finally:
        app.engine.dispose()
