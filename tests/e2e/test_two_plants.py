"""Two plants of one tenant synced through central, everything a real process (two
``rae-edge serve`` nodes, ``rae-central serve`` with two workers and a local Qdrant folder,
mosquitto, PostgreSQL; :mod:`tests.fixtures.stack`):

- a correction made at plant A through the API appears in plant B's briefing and on B's
  push socket, exactly once;
- two plants correcting the same fix at the same moment both keep their correction:
  both are in Postgres and in both briefings, in the same order, that of the hybrid clock
  (no last-writer-wins);
- an edge killed with SIGKILL while its outbox is full (corrections made while the broker
  was down), restarted, then the broker back: every correction exactly once in Postgres,
  in Qdrant and at the other plant.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from rae_edge.store import DuckStore
from tests.fixtures.stack import Stack, wait_for

pytestmark = pytest.mark.faults  # real processes, like the fault tests

N_OFFLINE = 30  # corrections made at A while the broker is down (small: CI has 2 cores)


def _machines(*ids: str) -> list[dict[str, Any]]:
    return [{"id": m, "name": m.title(), "qr_code": f"QR-{m.upper()}", "site": "any"}
            for m in ids]


def _incident(stack: Stack, machine: str) -> str:
    """The same incident recorded at both plants (its id derives from its content)."""
    inc = {"machine_id": machine, "occurred_at": "2026-02-03T08:15:00+00:00",
           "error_code": "E404", "symptom": "feeder jams, sensor X reads zero",
           "action": "Replaced sensor X"}
    ids_a = stack.post_incidents("a", [inc])["ids"]
    ids_b = stack.post_incidents("b", [inc])["ids"]
    assert ids_a == ids_b and len(ids_a) == 1
    return str(ids_a[0])


def _hlc_of(stack: Stack, ids: list[str]) -> dict[str, str]:
    rows = stack.sql("SELECT id, hlc FROM corrections WHERE id = ANY(:ids)", ids=ids)
    return {r[0]: r[1] for r in rows}


def test_correction_at_a_reaches_b_briefing_and_push_once(plants: Stack) -> None:
    stack = plants
    stack.add_machines(["a", "b"], _machines("press-7", "lathe-2"))
    inc = _incident(stack, "press-7")
    watcher = stack.watch("b", ["press-7", "lathe-2"])
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
    [pushed] = watcher.messages("correction")
    assert pushed["machine_id"] == "press-7"
    assert pushed["data"]["origin"]["site_id"] == "plant-a"
    assert stack.central_correction_ids().count(c["id"]) == 1
    # Nothing arrives at B a second time (a fan-out sweep, a redelivery): a later
    # correction is the marker that everything before it had its chance.
    wait_for(lambda: stack.sql("SELECT count(*) FROM fanout")[0][0] == 0, 30,
             "central's fan-out queue empty")
    marker = stack.post_correction("a", "lathe-2", "a later correction, as a marker")
    wait_for(lambda: marker["id"] in watcher.correction_ids(), 60, "the marker pushed at B")
    assert watcher.correction_ids() == [c["id"], marker["id"]]
    assert stack.correction_ids("b", "QR-PRESS-7") == [c["id"]]
    # the plant that made it has it once (it does not come back from central)
    assert stack.correction_ids("a", "QR-PRESS-7") == [c["id"]]


def test_two_plants_correct_the_same_fix_concurrently_both_survive(plants: Stack) -> None:
    stack = plants
    stack.add_machines(["a", "b"], _machines("mill-3"))
    inc = _incident(stack, "mill-3")
    made: dict[str, dict[str, Any]] = {}
    go = threading.Barrier(2)

    def correct(node: str, text: str) -> None:
        go.wait()
        made[node] = stack.post_correction(node, "mill-3", text, target_id=inc)

    threads = [threading.Thread(target=correct, args=("a", "Sensor X cable was loose.")),
               threading.Thread(target=correct, args=("b", "Sensor X connector corroded."))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ids = sorted(c["id"] for c in made.values())
    assert len(ids) == 2
    for node in ("a", "b"):
        wait_for(lambda node=node: sorted(stack.correction_ids(node, "mill-3")) == ids, 60,  # type: ignore[misc]
                 f"both corrections in {node}'s briefing")
    hlc = _hlc_of(stack, ids)
    assert sorted(hlc) == ids and all(hlc.values()), "both in Postgres, each with its HLC"
    by_clock = sorted(ids, key=lambda i: (hlc[i], i))
    for node in ("a", "b"):
        brief = stack.briefing(node, "mill-3")
        [shown] = [i for i in brief["incidents"] if i["id"] == inc]
        order = [c["id"] for c in shown["corrections"]]
        assert order == by_clock, f"{node}: corrections not in hybrid-clock order"
        # the later one is the current fix; the earlier one and the old fix stay visible
        texts = {c["id"]: c["text"] for c in shown["corrections"]}
        assert shown["current_fix"] == texts[by_clock[-1]]
        assert shown["action"] == "Replaced sensor X" and shown["superseded"]
    assert Counter(stack.central_correction_ids())[ids[0]] == 1
    assert Counter(stack.central_correction_ids())[ids[1]] == 1


def test_edge_kill_9_with_a_full_outbox_delivers_every_correction_once(plants: Stack) -> None:
    stack = plants
    machines = [f"line-{i}" for i in range(3)]
    stack.add_machines(["a", "b"], _machines(*machines))
    watcher = stack.watch("b", machines)
    stack.broker.stop()
    made = [stack.post_correction("a", machines[i % 3], f"offline correction {i}: belt "
                                  f"tension set to {40 + i} N") for i in range(N_OFFLINE)]
    ids = {c["id"] for c in made}
    assert len(ids) == N_OFFLINE
    stack.nodes["a"].kill9()
    duck = DuckStore(stack.nodes["a"].data_dir / "node.duckdb")
    try:
        assert duck.outbox_depth() >= N_OFFLINE, "the killed node kept its whole outbox"
    finally:
        duck.close()
    stack.nodes["a"].start()  # with the broker still away: it must start anyway
    stack.broker.start()

    in_pg = wait_for(lambda: ids <= set(stack.central_correction_ids()) and
                     stack.central_correction_ids(), 90, "every correction in Postgres")
    counts = Counter(in_pg)
    assert all(counts[i] == 1 for i in ids)
    at_b = lambda: [c for m in machines for c in stack.correction_ids("b", m)]  # noqa: E731
    wait_for(lambda: ids <= set(at_b()), 90, "every correction in B's briefing")
    assert sorted(at_b()) == sorted(ids), "each once in B's briefings"
    wait_for(lambda: ids <= set(watcher.correction_ids()), 30, "every correction pushed at B")
    assert sorted(watcher.correction_ids()) == sorted(ids), "each pushed once at B"
    # and at A each still once (its own, not applied again)
    assert sorted(c for m in machines for c in stack.correction_ids("a", m)) == sorted(ids)
    stack.wait_embedded()
    in_qdrant = Counter(stack.qdrant_ids("acme", "correction", restart=False))
    assert all(in_qdrant[i] == 1 for i in ids), "each correction once in Qdrant"
