"""Cached briefings on a real node (DuckDB, LanceDB, the ONNX embedder): a scan of a
machine nothing was written to since gets the briefing built before, and every write a
briefing shows (incident, correction, "this fixed it", machine row, a manual) is in the
next one, also while other threads keep the cache busy."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from rae_edge.node import EdgeNode
from rae_sync.domain import Incident, Machine, Verdict

T0 = datetime(2026, 11, 1, 8, tzinfo=UTC)


def _machines(node: EdgeNode, name: str = "Press") -> None:
    node.duck.upsert_machines([Machine(tenant_id="acme", id="P1", name=name, qr_code="Q-P1"),
                               Machine(tenant_id="acme", id="P2", name="Lathe", qr_code="Q-P2")])


def _inc(machine: str, n: int, code: str | None = None) -> Incident:
    return Incident(tenant_id="acme", machine_id=machine, occurred_at=T0 + timedelta(hours=n),
                    error_code=code, symptom=f"ram stops at top {n}",
                    action=f"replaced sensor {n}")


def test_every_write_a_briefing_shows_is_in_the_next_one(node: EdgeNode) -> None:
    _machines(node)
    svc = node.memory
    first = svc.briefing("acme", "Q-P1")
    assert svc.briefing("acme", "Q-P1") is first  # nothing written since: not rebuilt
    svc.add_incidents("acme", [_inc("P2", 1)])  # another machine's incident
    assert svc.briefing("acme", "P1") is first

    _, new = svc.add_incidents("acme", [_inc("P1", 2, "E404")])
    b = svc.briefing("acme", "Q-P1")
    assert b.incident_count == 1 and [i.id for i in b.incidents] == [new[0].id]
    coded = svc.briefing("acme", "Q-P1", error_code="E404")
    assert coded is not b and coded.summary.startswith("Current error E404: seen 1 time")

    c = svc.add_correction("acme", machine_id="P1", text="sensor was only loose",
                           author="tech", target_id=new[0].id)
    b = svc.briefing("acme", "Q-P1")
    assert [x.id for x in b.incidents[0].corrections] == [c.id]
    assert b.incidents[0].current_fix == "sensor was only loose"
    assert svc.briefing("acme", "Q-P1", error_code="E404").incidents[0].superseded

    node.feedback.record("acme", memory_id=new[0].id, verdict=Verdict.FIXED, author="tech")
    assert svc.briefing("acme", "Q-P1").incidents[0].confirmations == 1

    _machines(node, name="Press 7")
    assert svc.briefing("acme", "Q-P1").machine.name == "Press 7"

    added = node.duck.insert_incidents([_inc("P1", 3)])  # the tools' path, not the writer
    b = svc.briefing("acme", "Q-P1")
    assert b.incident_count == 2 and b.incidents[0].id == added[0].id

    # As it was then: never served from the cache of now.
    then = svc.briefing("acme", "Q-P1", as_of=T0 + timedelta(hours=2, minutes=30))
    assert then.incident_count == 1 and then.incidents[0].id == new[0].id


def test_a_briefing_after_a_write_shows_it_while_others_read(node: EdgeNode) -> None:
    """Readers build and cache briefings while the writer commits: each briefing taken
    after a write's answer counts exactly the incidents written so far."""
    _machines(node)
    svc = node.memory
    stop = threading.Event()
    reads = [0]
    failures: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                svc.briefing("acme", "Q-P1", publish=False)
                reads[0] += 1
        except BaseException as e:  # reported below
            failures.append(e)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    seen: list[int] = []
    try:
        for n in range(25):
            svc.add_incidents("acme", [_inc("P1", 10 + n)])
            seen.append(svc.briefing("acme", "Q-P1", publish=False).incident_count)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert not failures
    assert seen == list(range(1, 26))
    assert reads[0] > 25  # the readers did run alongside
