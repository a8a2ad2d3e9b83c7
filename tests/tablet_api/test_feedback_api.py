"""``POST /api/v1/feedback`` against a real node (DuckDB, LanceDB, the packaged embedder):
a "this fixed it" is stored with who and when, queued for sync, audited, and puts a
confirmed fix ahead of an otherwise equal one; a "not relevant" lowers a memory for the
query it was given for and queries like it, not for another."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rae_edge.audit import AuditLog
from rae_edge.sync_agent.codec import message_for
from rae_sync.messages import FeedbackMsg
from tests.tablet_api.api_client import Api, api_for

PRESS = {"id": "PRESS-07", "name": "Hydraulic press 7", "qr_code": "QR:PRESS-07"}
# Two fixes with the same words on different days: equal for every retriever.
TWIN = {"machine_id": "PRESS-07", "symptom": "Ram drifts down under load",
        "action": "Replaced the pilot check valve"}
LEAK = {"machine_id": "PRESS-07", "occurred_at": "2026-03-01T06:00:00+00:00",
        "symptom": "Hydraulic pump leaking oil", "action": "Replaced the pump shaft seal"}
FITTING = {"machine_id": "PRESS-07", "occurred_at": "2026-04-01T06:00:00+00:00",
           "symptom": "Pump leaking oil at the inlet", "action": "Tightened the inlet fitting"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    # Sync on (a broker URL, no identity: the agent does not run), so verdicts stay queued.
    with api_for(tmp_path_factory.mktemp("feedback"),
                 sync={"mqtt_url": "mqtt://127.0.0.1:9"}) as a:
        a.ok(a.post("/machines", [PRESS]))
        a.ok(a.post("/incidents", [
            {**TWIN, "occurred_at": "2026-01-10T08:00:00+00:00"},
            {**TWIN, "occurred_at": "2026-02-10T08:00:00+00:00"}, LEAK, FITTING]))
        yield a


def _search(api: Api, q: str) -> list[dict[str, Any]]:
    return list(api.ok(api.get("/search", "acme_technician", q=q,
                               machine_id="PRESS-07"))["hits"])


def test_confirmation_stored_synced_audited_and_orders_equal_fixes(api: Api) -> None:
    q = "ram drifts down under load"
    before = _search(api, q)
    twins = [h for h in before if "pilot check valve" in h["text"]]
    # Otherwise equal: the same text, so the same vector distance and BM25 score; rank
    # fusion puts one right after the other (by id).
    assert len(twins) == 2 and twins[0]["text"] == twins[1]["text"]
    assert [h["id"] for h in before][:2] == [twins[0]["id"], twins[1]["id"]]
    second = twins[1]["id"]

    r = api.post("/feedback", {"memory_id": second, "verdict": "fixed", "query": q,
                               "machine_id": "PRESS-07"}, "acme_technician")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["memory"] == {"id": second, "confirmations": 1, "plants": 1}
    assert body["author"].startswith("acme-technician#")
    # Stored with who and when.
    row = api.node.duck.query(
        "SELECT memory_id, verdict, author, origin_node, created_at FROM feedback "
        "WHERE tenant_id = 'acme' AND id = ?", [body["id"]])
    assert len(row) == 1 and row[0][:4] == (second, "fixed", body["author"], "plant-1/node-1")
    assert row[0][4] is not None
    # Queued for sync in the same transaction, as a valid wire message.
    out = [(k, p) for _, t, k, p in api.node.duck.outbox_peek(1000) if k == "feedback"]
    assert [p["id"] for _, p in out] == [body["id"]]
    msg = message_for("feedback", out[0][1], "")
    assert isinstance(msg, FeedbackMsg) and msg.feedback.memory_id == second
    # Audited: who gave a verdict on which memory.
    entry = [e for e in AuditLog(api.node.duck).entries("acme", limit=100000)
             if e.action == "POST /api/v1/feedback"][-1]
    assert entry.resource == "201" and entry.actor == body["author"]
    assert entry.memory_ids == (body["id"], second)
    # The confirmed twin now ranks first.
    after = _search(api, q)
    assert [h["id"] for h in after][:2] == [second, twins[0]["id"]]
    assert after[0]["score"] > after[1]["score"]


def test_not_relevant_lowers_a_hit_for_that_query_only(api: Api) -> None:
    qa, qb = "pump leaking oil", "shaft seal replacement"
    a_before, b_before = _search(api, qa), _search(api, qb)
    leak = next(h for h in a_before if "shaft seal" in h["text"])
    fitting = next(h for h in a_before if "inlet fitting" in h["text"])
    assert leak["id"] in [h["id"] for h in b_before]

    r = api.post("/feedback", {"memory_id": leak["id"], "verdict": "not_relevant",
                               "query": qa}, "acme_technician")
    assert r.status_code == 201, r.text
    assert r.json()["memory"]["confirmations"] == 0

    a_after, b_after = _search(api, qa), _search(api, qb)
    ids_a = [h["id"] for h in a_after]
    assert ids_a.index(leak["id"]) > ids_a.index(fitting["id"])
    score_a = next(h["score"] for h in a_after if h["id"] == leak["id"])
    assert score_a == pytest.approx(leak["score"] * 0.3, rel=1e-3)
    # A rewording of the same query is "like that one": lowered too.
    reworded = _search(api, "pump is leaking oil")
    assert [h["id"] for h in reworded].index(leak["id"]) > \
        [h["id"] for h in reworded].index(fitting["id"])
    # Another query: untouched, same place and score.
    assert [h["id"] for h in b_after] == [h["id"] for h in b_before]
    assert [h["score"] for h in b_after] == [h["score"] for h in b_before]


def test_bad_feedback_is_refused_with_the_reason(api: Api) -> None:
    r = api.post("/feedback", {"memory_id": "inc_nope", "verdict": "fixed"}, "acme_technician")
    assert r.status_code == 404 and "inc_nope" in r.json()["error"]["message"]
    r = api.post("/feedback", {"memory_id": "x", "verdict": "great"}, "acme_technician")
    assert r.status_code == 400 and "verdict" in str(r.json()["error"])
    some = _search(api, "pump leaking oil")[0]["id"]
    r = api.post("/feedback", {"memory_id": some, "verdict": "fixed"}, "globex_technician")
    assert r.status_code == 404  # another tenant's memory does not exist for it
    r = api.client.post("/api/v1/feedback", json={"memory_id": some, "verdict": "fixed"})
    assert r.status_code == 401
    n = api.node.duck.query("SELECT count(*) FROM feedback WHERE memory_id = ? "
                            "AND tenant_id = 'globex'", [some])[0][0]
    assert n == 0


def test_briefing_groups_by_codes_in_the_text_and_shows_confirmations(api: Api) -> None:
    api.ok(api.post("/machines", [{"id": "LINE-3", "name": "Line 3", "qr_code": "QR:LINE-3"}]))
    api.ok(api.post("/incidents", [
        {"machine_id": "LINE-3", "occurred_at": "2026-05-01T06:00:00+00:00",
         "error_code": "E771", "symptom": "Feeder jam", "action": "Cleared the chute"},
        {"machine_id": "LINE-3", "occurred_at": "2026-06-01T06:00:00+00:00",
         "symptom": "Alarm E771 again, feeder jammed", "action": "Realigned the guide rail"}]))
    latest = api.node.duck.incidents_for_machine("acme", "LINE-3")[0]
    assert latest.error_code is None  # logged without a code; its text names one
    api.ok(api.post("/feedback", {"memory_id": latest.id, "verdict": "fixed"},
                    "acme_technician"))
    from rae_sync.domain import Feedback, Verdict

    api.node.memory.feedback.store(Feedback(  # as the sync agent stores another plant's
        tenant_id="acme", memory_id=latest.id, verdict=Verdict.FIXED, author="bo#2",
        origin_node="plant-2/node-7"), outbox=False)
    b = api.ok(api.get("/machines/LINE-3/briefing", "acme_technician", error_code="E771"))
    first = b["incidents"][0]
    assert (first["id"], first["error_code"]) == (latest.id, "E771")
    assert (first["confirmations"], first["confirmed_plants"]) == (2, 2)
    assert b["incidents"][1]["confirmations"] == 0
    assert [i["relevance"] for i in b["incidents"]] == ["error_code", "error_code"]
    assert [(p["error_code"], p["count"]) for p in b["recurring"]] == [("E771", 2)]
    assert "Current error E771: seen 2 time(s) before" in b["summary"]
    assert "Fixed by: Realigned the guide rail. Confirmed 2× at 2 plants." in b["summary"]
