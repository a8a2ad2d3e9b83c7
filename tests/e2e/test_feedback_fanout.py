"""Verdicts ("this fixed it" / "not relevant") between two plants through central, on the
secure deployment an operator builds, everything a real process: ``rae-central pki init``,
``enroll`` (identities with certificate, key and broker password), ``broker-config``
(mosquitto with TLS, client certificates and a per-node ACL), ``rae-central serve`` (two
workers, on its own client certificate), two ``rae-edge serve --enroll FILE`` nodes (the
broker's ``mqtts://`` URL from the identity) and PostgreSQL (:mod:`tests.fixtures.secure_stack`).

- a confirmation posted at plant A is audited there, stored at central exactly once,
  arrives at plant B once (not back at A), and puts the confirmed one of two otherwise
  equal fixes first at B, where the read that shows it is audited; B confirming too makes
  it "confirmed 2x at 2 plants" at both;
- a "not relevant" given at A lowers that hit at B for the query it was given for, and
  leaves another query's ranking as it was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from rae_sync.identity import NodeIdentity
from tests.fixtures.postgres import PgServer
from tests.fixtures.secure_stack import secure_stack
from tests.fixtures.stack import Stack, wait_for

pytestmark = pytest.mark.faults  # real processes, like the other e2e tests

PRESS = {"id": "press-7", "name": "Press 7", "qr_code": "QR-PRESS-7", "site": "any"}
# Two fixes with the same words on different days: equal for every retriever.
TWIN = {"machine_id": "press-7", "symptom": "Ram drifts down under load",
        "action": "Replaced the pilot check valve"}
LEAK = {"machine_id": "press-7", "occurred_at": "2026-03-01T06:00:00+00:00",
        "symptom": "Hydraulic pump leaking oil", "action": "Replaced the pump shaft seal"}
FITTING = {"machine_id": "press-7", "occurred_at": "2026-04-01T06:00:00+00:00",
           "symptom": "Pump leaking oil at the inlet", "action": "Tightened the inlet fitting"}
INCIDENTS = [{**TWIN, "occurred_at": "2026-01-10T08:00:00+00:00"},
             {**TWIN, "occurred_at": "2026-02-10T08:00:00+00:00"}, LEAK, FITTING]


@pytest.fixture(scope="module")
def plants(tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer) -> Iterator[Stack]:
    with secure_stack(tmp_path_factory.mktemp("secure-plants"), pg_server, ["a", "b"]
                      ) as (stack, _broker):
        yield stack


def _search(stack: Stack, node: str, q: str) -> list[dict[str, Any]]:
    r = stack.http(node, "GET", "/search", params={"q": q, "machine_id": "press-7"})
    assert r.status_code == 200, r.text
    return list(r.json()["hits"])


def _ids(hits: list[dict[str, Any]]) -> list[str]:
    return [h["id"] for h in hits]


def _verdict(stack: Stack, node: str, memory_id: str, verdict: str, q: str) -> dict[str, Any]:
    r = stack.http(node, "POST", "/feedback", json={
        "memory_id": memory_id, "verdict": verdict, "query": q, "machine_id": "press-7"})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def _central_verdicts(stack: Stack) -> list[str]:
    """Verdict ids in Postgres, duplicates kept."""
    return [r[0] for r in stack.sql("SELECT id FROM feedback WHERE tenant_id = 'acme'")]


def _audited(stack: Stack, node: str, action: str) -> list[list[str]]:
    """The memory ids of a node's audit entries with ``action``, as synced to central."""
    return [list(r[0]) for r in stack.sql(
        "SELECT entry->'memory_ids' FROM audit_entries WHERE tenant_id = 'acme' AND "
        "node_id = :n AND entry->>'action' = :a ORDER BY seq", n=f"node-{node}", a=action)]


def _tally(stack: Stack, node: str, memory_id: str) -> tuple[int, int]:
    [inc] = [i for i in stack.briefing(node, "QR-PRESS-7")["incidents"] if i["id"] == memory_id]
    return int(inc["confirmations"]), int(inc["confirmed_plants"])


def test_a_confirmation_at_a_is_stored_once_reaches_b_and_orders_equal_fixes(
        plants: Stack) -> None:
    stack = plants
    for edge in stack.nodes.values():  # each node on its certificate, over the TLS URL
        ident = NodeIdentity.load(edge.identity)
        assert ident.tls is not None and ident.mqtt_password
        assert ident.mqtt_url == stack.broker.url and ident.mqtt_url.startswith("mqtts://")
        assert "--mqtt-url" not in edge.process.extra_args
    stack.add_machines(["a", "b"], [PRESS])
    ids = stack.post_incidents("a", INCIDENTS)["ids"]
    assert stack.post_incidents("b", INCIDENTS)["ids"] == ids  # ids derive from content
    q = "ram drifts down under load"
    before = _search(stack, "b", q)
    twins = [h for h in before if "pilot check valve" in h["text"]]
    assert len(twins) == 2 and twins[0]["text"] == twins[1]["text"]
    assert _ids(before)[:2] == _ids(twins)  # otherwise equal: next to each other
    first, second = _ids(twins)
    assert _ids(_search(stack, "a", q))[:2] == [first, second]

    fb = _verdict(stack, "a", second, "fixed", q)
    assert fb["memory"] == {"id": second, "confirmations": 1, "plants": 1}

    # at B: the confirmed twin ranks first, shown as confirmed once at one plant
    wait_for(lambda: _ids(_search(stack, "b", q))[:2] == [second, first], 90,
             "the confirmation from A ranking the twin first at B")
    after = _search(stack, "b", q)
    assert after[0]["score"] > after[1]["score"]
    assert _tally(stack, "b", second) == (1, 1) and _tally(stack, "b", first) == (0, 0)

    # central has it exactly once, with A as its plant; A's verdict was audited at A and
    # B's read of the new order at B (both chains synced to central)
    wait_for(lambda: stack.sql("SELECT count(*) FROM fanout")[0][0] == 0, 60,
             "B acked the verdict: central's down log empty")
    assert Counter(_central_verdicts(stack))[fb["id"]] == 1
    [row] = stack.sql("SELECT memory_id, verdict, origin_site, origin_node, author "
                      "FROM feedback WHERE id = :i", i=fb["id"])
    assert tuple(row) == (second, "fixed", "plant-a", "node-a", fb["author"])
    wait_for(lambda: [fb["id"], second] in _audited(stack, "a", "POST /api/v1/feedback"),
             60, "A's audit entry of the verdict at central")
    wait_for(lambda: any(m[:2] == [second, first]
                         for m in _audited(stack, "b", "GET /api/v1/search")), 60,
             "B's audited read of the new order at central")

    # not back to A: A counts its own confirmation once. B confirms too: both plants now
    # show it confirmed twice at two plants, and central holds each verdict once
    assert _tally(stack, "a", second) == (1, 1)
    mine = _verdict(stack, "b", second, "fixed", q)
    assert mine["memory"] == {"id": second, "confirmations": 2, "plants": 2}
    wait_for(lambda: _tally(stack, "a", second) == (2, 2), 60, "B's confirmation at A")
    assert _tally(stack, "b", second) == (2, 2)
    wait_for(lambda: mine["id"] in _central_verdicts(stack), 30, "B's verdict at central")
    wait_for(lambda: stack.sql("SELECT count(*) FROM fanout")[0][0] == 0, 60,
             "central's down log empty")
    counts = Counter(_central_verdicts(stack))
    assert (counts[fb["id"]], counts[mine["id"]]) == (1, 1)
    # one accepted message per verdict (the re-sends and redeliveries were no-ops)
    assert stack.sql("SELECT count(*) FROM messages WHERE type = 'feedback'")[0][0] == 2


def test_not_relevant_at_a_lowers_the_hit_at_b_for_that_query_only(plants: Stack) -> None:
    stack = plants
    qa, qb = "pump leaking oil", "shaft seal replacement"
    a_before, b_before = _search(stack, "b", qa), _search(stack, "b", qb)
    leak = next(h for h in a_before if "shaft seal" in h["text"])
    fitting = next(h for h in a_before if "inlet fitting" in h["text"])
    assert leak["id"] in _ids(b_before)

    fb = _verdict(stack, "a", leak["id"], "not_relevant", qa)
    assert fb["memory"]["confirmations"] == 0

    wait_for(lambda: _ids(_search(stack, "b", qa)).index(leak["id"]) >
             _ids(_search(stack, "b", qa)).index(fitting["id"]), 90,
             "A's 'not relevant' lowering the hit at B")
    lowered = next(h for h in _search(stack, "b", qa) if h["id"] == leak["id"])
    assert lowered["score"] < leak["score"]
    # another query at B: the same hits, places and scores as before
    b_after = _search(stack, "b", qb)
    assert _ids(b_after) == _ids(b_before)
    assert [h["score"] for h in b_after] == [h["score"] for h in b_before]
    wait_for(lambda: Counter(_central_verdicts(stack))[fb["id"]] == 1, 30,
             "the verdict at central")
    assert Counter(_central_verdicts(stack))[fb["id"]] == 1
