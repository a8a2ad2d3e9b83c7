"""Two plants of one tenant, synced through central, all as real processes: a correction
made at plant A appears at plant B (briefing and push socket) exactly once; two plants
correcting the same fix at once both keep their correction, in hybrid-clock order; an edge
killed with a full outbox loses nothing and duplicates nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.stack import Stack, wait_for

pytestmark = pytest.mark.faults  # real processes, like the fault tests

MACHINES = [{"id": "press-7", "name": "Press 7", "qr_code": "QR-PRESS-7", "site": "any"},
            {"id": "lathe-2", "name": "Lathe 2", "qr_code": "QR-LATHE-2", "site": "any"}]
INCIDENT = {"machine_id": "press-7", "occurred_at": "2026-02-03T08:15:00+00:00",
            "error_code": "E404", "symptom": "feeder jams, sensor X reads zero",
            "action": "Replaced sensor X"}


def _setup(stack: Stack) -> str:
    stack.add_machines(["a", "b"], MACHINES)
    # the same incident at both plants has the same content-derived id
    ids_a = stack.post_incidents("a", [INCIDENT])
    ids_b = stack.post_incidents("b", [INCIDENT])
    inc = _first_id(ids_a)
    assert inc == _first_id(ids_b)
    return inc


def _first_id(answer: Any) -> str:
    if isinstance(answer, dict):
        answer = answer.get("ids") or answer.get("incidents")
    first = answer[0]
    return str(first["id"] if isinstance(first, dict) else first)


def test_correction_at_a_reaches_b_briefing_and_push_once(stack: Stack) -> None:
    inc = _setup(stack)
    watcher = stack.watch("b", ["press-7"])
    c = stack.post_correction("a", "press-7", "Sensor X was actually loose, not broken.",
                              target_id=inc)
    wait_for(lambda: c["id"] in stack.correction_ids("b", "QR-PRESS-7"), 60,
             "the correction in B's briefing")
    brief = stack.briefing("b", "QR-PRESS-7")
    [shown] = [i for i in brief["incidents"] if i["id"] == inc]
    assert [x["id"] for x in shown["corrections"]] == [c["id"]]
    assert shown["current_fix"] == "Sensor X was actually loose, not broken."
    assert shown["superseded"] is True and shown["action"] == "Replaced sensor X"
    assert [x["origin_node"] for x in brief["corrections"]] == ["node-a"]
    wait_for(lambda: c["id"] in watcher.correction_ids(), 30, "the correction pushed at B")
    # in Postgres once, and nothing more arrives at B (e.g. from the fan-out sweep)
    assert stack.central_correction_ids() == [c["id"]]
    wait_for(lambda: stack.sql("SELECT count(*) FROM fanout")[0][0] == 0, 30,
             "the fan-out queue empty")
    stack.post_correction("a", "lathe-2", "a later correction, as a marker")
    wait_for(lambda: len(watcher.correction_ids()) >= 1 and
             len(stack.correction_ids("b", "QR-LATHE-2")) == 1, 60, "the marker at B")
    assert watcher.correction_ids() == [c["id"]], "B pushed the correction exactly once"
    assert stack.correction_ids("b", "QR-PRESS-7") == [c["id"]]
    # A made it, so A's briefing has it once too (not back from central)
    assert stack.correction_ids("a", "QR-PRESS-7") == [c["id"]]
