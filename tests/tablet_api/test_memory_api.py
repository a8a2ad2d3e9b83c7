"""The memory API over HTTP against a real node (DuckDB, LanceDB, the packaged embedder):
machines and QR codes, briefings, incidents, corrections, search, context packs and
document upload jobs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rae_edge.sample_plant.loader import SAMPLE_DIR
from tests.tablet_api.api_client import Api, api_for

PRESS = {"id": "PRESS-07", "name": "Hydraulic press 7", "qr_code": "QR:PLANT1:PRESS-07",
         "site": "plant-1", "line": "L2"}
LATHE = {"id": "LATHE-02", "name": "CNC lathe 2", "qr_code": "QR:PLANT1:LATHE-02",
         "site": "plant-1"}
E404_NOV = {"machine_id": "PRESS-07", "occurred_at": "2026-11-12T08:30:00+00:00",
            "error_code": "E404", "symptom": "Ram stops mid-stroke, light curtain fault",
            "action": "Replaced light curtain sensor X"}
E404_OCT = {"machine_id": "PRESS-07", "occurred_at": "2026-10-02T14:00:00+00:00",
            "error_code": "E404", "symptom": "Light curtain fault at start of shift",
            "action": "Cleaned the receiver lens"}
LEAK = {"machine_id": "PRESS-07", "occurred_at": "2026-09-01T06:00:00+00:00",
        "symptom": "L/H CYL LEAKING", "action": "R&R SEAL KIT"}
LATHE_INC = {"machine_id": "LATHE-02", "occurred_at": "2026-11-01T10:00:00+00:00",
             "error_code": "E404", "symptom": "Spindle light curtain fault on the lathe",
             "action": "Replaced lathe guard switch"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One node for the read-mostly tests of this module: two machines, four incidents,
    a correction (3 days after the November incident), the sample manual for the press."""
    with api_for(tmp_path_factory.mktemp("memapi"), qr={"label_pattern":
                                                         r"^PLANT1/(?P<id>[A-Z0-9-]+)/\d+$"}) as a:
        a.ok(a.post("/machines", [PRESS, LATHE]))
        a.ok(a.post("/incidents", [E404_NOV, E404_OCT, LEAK, LATHE_INC]))
        nov = a.node.duck.incidents_for_machine("acme", "PRESS-07")[0]
        assert nov.error_code == "E404" and nov.occurred_at.month == 11
        # Written as if 3 days later: the API stamps "now", so store it through the service
        # with an explicit time (same path as the route after the timestamp).
        from rae_sync.domain import Correction

        c = Correction(tenant_id="acme", machine_id="PRESS-07", author="tech#1",
                       text="Sensor X was actually loose, not broken",
                       target_id=nov.id, valid_from="2026-11-15T09:00:00+00:00")
        a.node.memory.record_correction(c)
        r = a.client.post("/api/v1/documents", headers=a.h("acme_supervisor"),
                          files={"file": ("manual.pdf", (SAMPLE_DIR / "manual.pdf").read_bytes(),
                                          "application/pdf")},
                          data={"kind": "manual", "machine_id": "PRESS-07"})
        assert r.status_code == 202, r.text
        job = a.node.memory.jobs.wait("acme", r.json()["id"], 120)
        assert job["status"] == "done", job
        yield a


def test_machines_listed_per_tenant_and_roles_enforced(api: Api) -> None:
    got = api.ok(api.get("/machines", "acme_technician"))
    assert [m["id"] for m in got] == ["LATHE-02", "PRESS-07"]
    assert api.ok(api.get("/machines", "globex_admin")) == []
    r = api.post("/machines", [PRESS], "acme_supervisor")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = api.post("/incidents", [E404_NOV], "acme_technician")
    assert r.status_code == 403
    r = api.post("/machines", [{**LATHE, "qr_code": PRESS["qr_code"]}])
    assert r.status_code == 409 and "PRESS-07" in r.json()["error"]["message"]
    r = api.post("/machines", [{"id": "bad id!", "name": "x", "qr_code": "x"}])
    assert r.status_code == 400 and "id" in json.dumps(r.json()["error"])


def test_briefing_has_own_history_corrections_recurring_manual_and_summary(api: Api) -> None:
    b = api.ok(api.get("/machines/QR:PLANT1:PRESS-07/briefing", "acme_technician"))
    assert b["machine"]["id"] == "PRESS-07"
    incs = b["incidents"]
    assert {i["machine_id"] for i in incs} == {"PRESS-07"}  # never the lathe's
    assert "lathe" not in json.dumps(incs).lower()
    assert [i["occurred_at"][:10] for i in incs] == ["2026-11-12", "2026-10-02", "2026-09-01"]
    nov = incs[0]
    assert nov["action"] == "Replaced light curtain sensor X"  # superseded fix still visible
    assert nov["superseded"] is True
    assert nov["current_fix"] == "Sensor X was actually loose, not broken"
    assert nov["superseded_by"] == [nov["corrections"][0]["id"]]
    assert incs[1]["superseded"] is False and incs[1]["current_fix"] == "Cleaned the receiver lens"
    rec = b["recurring"]
    assert rec[0]["error_code"] == "E404" and rec[0]["count"] == 2
    assert all("E404" in s["error_codes"] for s in b["manual_sections"])
    assert b["manual_sections"], "the sample manual's E404 section belongs in the briefing"
    assert b["summary"].startswith(
        "This machine had error E404 (Ram stops mid-stroke, light curtain fault) on 12 Nov 2026."
        " Fixed by: Replaced light curtain sensor X. Correction (3 days later): Sensor X was "
        "actually loose, not broken.")
    assert "Recurring: E404 2 times" in b["summary"]
    assert b["drift_alerts"] == [] and b["incident_count"] == 3


def test_briefing_as_of_and_current_error_code(api: Api) -> None:
    b = api.ok(api.get("/machines/PRESS-07/briefing", as_of="2026-11-13T00:00:00"))
    assert b["incidents"][0]["superseded"] is False  # the correction came on 15 Nov
    assert b["incidents"][0]["current_fix"] == "Replaced light curtain sensor X"
    b = api.ok(api.get("/machines/PRESS-07/briefing", as_of="2026-10-01T00:00:00Z"))
    assert [i["symptom"] for i in b["incidents"]] == ["L/H CYL LEAKING"]
    assert b["recurring"] == []
    b = api.ok(api.get("/machines/PRESS-07/briefing", as_of="2026-11-13T00:00:00",
                       error_code="E404"))
    assert [i["relevance"] for i in b["incidents"]] == ["error_code", "error_code", "recent"]
    assert b["summary"].startswith("Current error E404: seen 2 time(s) before")


def test_qr_payload_forms_and_unknown_code(api: Api) -> None:
    for code in ("PRESS-07", "https://plant.example/m/PRESS-07", "PLANT1/PRESS-07/42",
                 "https://node.local/?machine=PRESS-07"):
        b = api.ok(api.get("/briefing", code=code))
        assert b["machine"]["id"] == "PRESS-07", code
    r = api.get("/machines/NO-SUCH-MACHINE/briefing")
    assert r.status_code == 404
    assert "NO-SUCH-MACHINE" in r.json()["error"]["message"]
    r = api.get("/machines/PRESS-07/briefing", "globex_admin")  # another tenant's machine
    assert r.status_code == 404


def test_same_incident_twice_is_stored_once(api: Api) -> None:
    again = api.ok(api.post("/incidents", [E404_OCT, {**E404_OCT, "symptom": "  light curtain "
                                                      "FAULT at start of shift "}]))
    assert again["added"] == 0 and again["duplicates"] == 2
    assert again["ids"][0] == again["ids"][1]
    assert api.node.duck.query("SELECT count(*) FROM incidents WHERE id = ?",
                               [again["ids"][0]])[0][0] == 1
    assert api.node.lance.count(f"id = '{again['ids'][0]}'") == 1
    r = api.post("/incidents", [{**E404_OCT, "machine_id": "GHOST-1"}])
    assert r.status_code == 404 and "GHOST-1" in r.json()["error"]["message"]


def test_search_hybrid_abbreviations_filters_and_superseded(api: Api) -> None:
    res = api.ok(api.get("/search", "acme_technician", q="left hand cylinder leak"))
    assert res["hits"][0]["text"].startswith("L/H CYL LEAKING")
    assert "left hand" in res["normalized_query"]
    res = api.ok(api.get("/search", q="light curtain sensor", machine_id="PRESS-07", k=20))
    kinds = {h["kind"] for h in res["hits"]}
    assert {"incident", "correction", "manual"} <= kinds
    assert {h["machine_id"] for h in res["hits"]} <= {"PRESS-07", None}
    sup = [h for h in res["hits"] if h["superseded_by"]]
    cor = next(h for h in res["hits"] if h["kind"] == "correction")
    assert sup and cor["id"] in sup[0]["superseded_by"]
    order = [h["id"] for h in res["hits"]]
    assert order.index(cor["id"]) < order.index(sup[0]["id"])  # the correction wins
    res = api.ok(api.get("/search", q="light curtain", kind="incident", k=20))
    assert {h["kind"] for h in res["hits"]} == {"incident"}
    assert "LATHE-02" in {h["machine_id"] for h in res["hits"]}  # no machine: all of them
    res = api.ok(api.get("/search", q="light curtain", as_of="2026-10-15T00:00:00Z", k=20))
    assert all(h["occurred_at"] is None or h["occurred_at"] <= "2026-10-15"
               for h in res["hits"])
    assert "correction" not in {h["kind"] for h in res["hits"]}
    assert api.ok(api.get("/search", "globex_admin", q="light curtain"))["hits"] == []


def test_search_machine_filter_cannot_be_widened(api: Api) -> None:
    for evil in ("x' OR '1'='1", "PRESS-07' OR machine_id = 'LATHE-02",
                 "LATHE-02') OR (1=1", "\\' OR 1=1 --"):
        res = api.ok(api.get("/search", q="light curtain fault", machine_id=evil, k=50))
        assert [h for h in res["hits"] if h["machine_id"] is not None] == [], evil
    r = api.get("/search", q="x", kind="nonsense")
    assert r.status_code == 422 and "nonsense" in r.json()["error"]["message"]
    assert api.get("/search", q="  ").status_code == 422


def test_correction_is_stored_with_outbox_indexed_and_linked(api: Api) -> None:
    lathe = api.node.duck.incidents_for_machine("acme", "LATHE-02")[0]
    before = api.node.duck.outbox_depth()
    c = api.ok(api.post("/corrections", {"machine_id": "LATHE-02", "target_id": lathe.id,
                                         "text": "Guard switch fine; the zirconium bracket "
                                                 "had shifted"}, "acme_technician"))
    assert c["target_id"] == lathe.id and c["method"] == "typed" and c["author"]
    # Sync is off on this node (no identity, no broker URL: EdgeSettings.sync_on), so
    # nothing is queued for central; tests/edge/test_writer.py checks the queued message.
    assert not api.node.settings.sync_on
    assert api.node.duck.outbox_depth() == before == 0
    res = api.ok(api.get("/search", q="zirconium bracket", machine_id="LATHE-02"))
    assert res["hits"][0]["id"] == c["id"]
    b = api.ok(api.get("/machines/LATHE-02/briefing"))
    assert b["incidents"][0]["corrections"][0]["id"] == c["id"]
    # Wrong target machine, unknown target, unknown machine, empty text.
    press = api.node.duck.incidents_for_machine("acme", "PRESS-07")[0]
    r = api.post("/corrections", {"machine_id": "LATHE-02", "target_id": press.id, "text": "x"})
    assert r.status_code == 422 and "PRESS-07" in r.json()["error"]["message"]
    r = api.post("/corrections", {"machine_id": "LATHE-02", "target_id": "inc_nope", "text": "x"})
    assert r.status_code == 404 and "inc_nope" in r.json()["error"]["message"]
    r = api.post("/corrections", {"machine_id": "NOPE", "text": "x"})
    assert r.status_code == 404
    r = api.post("/corrections", {"machine_id": "LATHE-02", "text": ""})
    assert r.status_code == 400
    r = api.post("/corrections", {"machine_id": "LATHE-02", "target_id": lathe.id,
                                  "text": "y"}, "globex_admin")
    assert r.status_code == 404  # globex has no LATHE-02


def test_context_pack_under_budget_with_corrections_first(api: Api) -> None:
    full = api.ok(api.get("/context", q="light curtain fault E404", machine_id="PRESS-07",
                          budget_tokens=100_000))
    assert full["tokens_used"] <= full["tokens_all_matches"]
    ids = [i["id"] for i in full["items"]]
    cor = next(i for i in full["items"] if i["kind"] == "correction")
    assert cor["corrects"] in ids and ids.index(cor["id"]) == ids.index(cor["corrects"]) - 1
    assert all(i["id"] in full["text"] for i in full["items"])
    small = api.ok(api.get("/context", q="light curtain fault E404", machine_id="PRESS-07",
                           budget_tokens=150))
    assert 0 < small["tokens_used"] <= 150
    assert small["tokens_saved"] == small["tokens_all_matches"] - small["tokens_used"] > 0
    counted = api.node.embedder.count_tokens
    from rae_edge.memory.context import HEADER

    assert small["tokens_used"] == counted(HEADER) + sum(i["tokens"] for i in small["items"])
    packed = {i["id"] for i in small["items"]}
    for item in small["items"]:  # nothing superseded travels without its corrections
        assert set(item["superseded_by"] or []) <= packed
        assert item["source"]
    r = api.get("/context", q="x", budget_tokens=0)
    assert r.status_code == 422


def test_document_upload_job_errors_and_limits(api: Api) -> None:
    csv = (b"timestamp,machine,code,message,action\n"
           b"2026-11-20T05:00:00,LATHE-02,E77,Coolant pump cavitating,Bled the pump\n"
           b"not-a-date,LATHE-02,E77,broken row,\n")
    r = api.client.post("/api/v1/documents", headers=api.h("acme_supervisor"),
                        files={"file": ("../../evil name.csv", csv, "text/csv")},
                        data={"kind": "errors"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 60
    while (job := api.ok(api.get(f"/jobs/{job_id}", "acme_technician")))["status"] not in (
            "done", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job["status"] == "done", job
    assert job["result"]["added"] == 1 and job["result"]["rejected"] == 1
    assert job["filename"] == "evil name.csv"
    stored = list((api.node.data_dir / "uploads" / job_id).iterdir())
    assert [p.name for p in stored] == ["evil_name.csv"]
    assert api.get(f"/jobs/{job_id}", "globex_admin").status_code == 404
    # Refusals: bad kind, unknown machine, no file, a technician; nothing left behind.
    uploads = set((api.node.data_dir / "uploads").iterdir())
    for data, files, who, status in (
        ({"kind": "poem"}, {"file": ("a.txt", b"x", "text/plain")}, "acme_supervisor", 422),
        ({"kind": "manual", "machine_id": "NOPE"}, {"file": ("a.pdf", b"%PDF", "x")},
         "acme_supervisor", 404),
        ({"kind": "manual"}, {"other": ("a.pdf", b"%PDF", "x")}, "acme_supervisor", 422),
        ({"kind": "manual"}, {"file": ("a.pdf", b"%PDF", "x")}, "acme_technician", 403),
    ):
        r = api.client.post("/api/v1/documents", headers=api.h(who), data=data, files=files)
        assert r.status_code == status, (data, r.text)
        assert r.json()["error"]["message"]
    assert set((api.node.data_dir / "uploads").iterdir()) == uploads


def test_upload_over_the_limit_is_refused(tmp_path: Path) -> None:
    with api_for(tmp_path, api={"max_upload_mb": 1}) as a:
        big = b"x" * (1024 * 1024 + 10)
        r = a.client.post("/api/v1/documents", headers=a.h("acme_supervisor"),
                          files={"file": ("big.txt", big, "text/plain")},
                          data={"kind": "shift"})
        assert r.status_code == 413
        assert not any((a.node.data_dir / "uploads").glob("*/*"))


def test_openapi_lists_every_memory_endpoint(api: Api) -> None:
    paths = api.client.get("/api/v1/schema/openapi.json").json()["paths"]
    for p, method in (("/api/v1/machines", "post"), ("/api/v1/machines", "get"),
                      ("/api/v1/machines/{code}/briefing", "get"), ("/api/v1/briefing", "get"),
                      ("/api/v1/incidents", "post"), ("/api/v1/documents", "post"),
                      ("/api/v1/jobs/{job_id}", "get"), ("/api/v1/search", "get"),
                      ("/api/v1/corrections", "post"), ("/api/v1/context", "get"),
                      ("/api/v1/push/messages", "get")):
        assert method in paths[p], (p, method)
    brief = paths["/api/v1/machines/{code}/briefing"]["get"]
    assert "200" in brief["responses"]
