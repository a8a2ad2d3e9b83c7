"""Central is the store of record for what goes down, the broker only a transport: real
``rae-edge serve`` nodes as senders AND receivers, ``rae-central serve``, mosquitto and
PostgreSQL (:class:`tests.fixtures.stack.Stack`).

- plant B offline; plant A corrects; central stores the correction and publishes it to
  B's topic (the broker takes it: it is queued in B's session); the broker is killed with
  SIGKILL and loses its state; it starts empty; B comes back: B gets the correction,
  exactly once (counted in a list), and so does a later one;
- catch-up after a long absence: B is away while A makes many corrections, its session at
  the broker is lost again, and central's console shows B as away (last heard from 30
  days ago) with what it has not received; when B comes back it receives each once and
  the console shows nothing owed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from tests.fixtures.stack import Stack, wait_for

pytestmark = pytest.mark.faults

N_AWAY = 40  # corrections made while B is away (small: CI has 2 cores)


def _machines(*ids: str) -> list[dict[str, Any]]:
    return [{"id": m, "name": m.title(), "qr_code": f"QR-{m.upper()}", "site": "any"}
            for m in ids]


def _owed_to_b(stack: Stack) -> list[tuple[int, Any]]:
    return [(int(r[0]), r[1]) for r in stack.sql(
        "SELECT id, sent_at FROM fanout WHERE node_id = 'node-b' ORDER BY id")]


def _node(stack: Stack, node_id: str) -> dict[str, Any]:
    [n] = [n for n in stack.admin("/nodes") if n["node_id"] == node_id]
    return n


def test_broker_sigkill_while_a_plant_is_offline_loses_nothing(stack: Stack) -> None:
    stack.add_machines(["a", "b"], _machines("press-7"))
    warm = stack.post_correction("a", "press-7", "before: coupling bolt re-torqued")
    wait_for(lambda: warm["id"] in stack.correction_ids("b", "press-7"), 60, "warm-up at B")
    wait_for(lambda: not _owed_to_b(stack), 30, "B acked the warm-up")

    stack.nodes["b"].stop()
    c = stack.post_correction("a", "press-7", "while B was offline: sensor X was loose")
    # central stored it and handed it to the broker for B (sent, not acked): the fault
    # lands while the correction sits in the broker's queue for B's session
    owed = wait_for(lambda: [r for r in _owed_to_b(stack) if r[1] is not None], 60,
                    "the correction published to B's topic")
    assert len(owed) == 1 and stack.central_correction_ids().count(c["id"]) == 1
    stack.broker.lose_state()
    stack.broker.start()
    stack.nodes["b"].start()
    wait_for(lambda: c["id"] in stack.correction_ids("b", "press-7"), 90,
             "the correction at B after the broker lost it")
    after = stack.post_correction("a", "press-7", "after the crash: cable re-routed")
    wait_for(lambda: after["id"] in stack.correction_ids("b", "press-7"), 90,
             "a later correction at B")
    at_b = stack.correction_ids("b", "press-7")
    assert Counter(at_b) == Counter({warm["id"]: 1, c["id"]: 1, after["id"]: 1}), at_b
    wait_for(lambda: not _owed_to_b(stack), 30, "nothing owed to B: it acked each")
    assert stack.sql("SELECT count(*) FROM messages WHERE node_id = 'node-b' "
                     "AND type = 'resume'")[0][0] >= 2, "B resumed on each connect"


def test_catch_up_after_a_long_absence(stack: Stack) -> None:
    machines = [f"line-{i}" for i in range(4)]
    stack.add_machines(["a", "b"], _machines(*machines))
    stack.nodes["b"].stop()
    made = [stack.post_correction("a", machines[i % 4], f"while B was away {i}: belt "
                                  f"tension set to {40 + i} N")["id"] for i in range(N_AWAY)]
    wait_for(lambda: len(_owed_to_b(stack)) == N_AWAY, 90, "every correction owed to B")
    stack.broker.lose_state()  # its session (and anything queued) is gone
    stack.broker.start()
    # B was last heard from a month ago: past the console's horizon (7 days)
    with stack.engine.begin() as conn:
        conn.execute(sa.text("UPDATE nodes SET last_seen = now() - interval '30 days' "
                             "WHERE node_id = 'node-b'"))
    b = _node(stack, "node-b")
    assert b["away"] is True and b["down_pending"] == N_AWAY and b["down_oldest_at"]
    assert _node(stack, "node-a")["away"] is False

    stack.nodes["b"].start()
    at_b = lambda: [c for m in machines for c in stack.correction_ids("b", m)]  # noqa: E731
    wait_for(lambda: set(made) <= set(at_b()), 120, "every missed correction at B")
    assert Counter(at_b()) == Counter(made), "each once at B"
    wait_for(lambda: not _owed_to_b(stack), 30, "nothing owed to B")
    b = _node(stack, "node-b")
    assert b["away"] is False and b["down_pending"] == 0 and b["down_acked"] >= N_AWAY
