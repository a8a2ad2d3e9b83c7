"""The MQTT broker stopped for minutes while technicians keep correcting, end to end: two
real ``rae-edge serve`` nodes (``--enroll`` / ``--mqtt-url``), ``rae-central serve`` with
two workers, mosquitto and PostgreSQL (:class:`tests.fixtures.stack.Stack`).

For ``OUTAGE_S`` seconds (default 120; ``RAE_FAULT_OUTAGE_S`` overrides) the broker is
down while corrections are posted to both plants' HTTP API. Shown:

- the API keeps acknowledging (every POST answers 201) and nothing reaches Postgres
  meanwhile: the corrections wait in the nodes' outboxes, which grow past the configured
  bound (the node logs its outbox alert; nothing is dropped);
- after the broker comes back, every correction is in Postgres exactly once and in the
  other plant's briefing exactly once;
- no process was restarted: the nodes, central and its workers reconnected by themselves
  (paho's reconnect backoff is capped at 30 s, so after a long outage delivery resumes
  within about that long; the test prints how long it took).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from tests.fixtures.stack import Stack, wait_for

pytestmark = pytest.mark.faults

OUTAGE_S = float(os.environ.get("RAE_FAULT_OUTAGE_S", "120"))
POST_EVERY_S = 2.0  # one correction every 2 s, alternating between the plants
OUTBOX_LIMIT = 10  # small, so the outage pushes the outbox past it
MACHINE = {"id": "press-1", "name": "Press 1", "qr_code": "QR-PRESS-1", "site": "any"}


def test_broker_down_for_minutes_while_correcting(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory()
    env = {"RAE_SYNC__OUTBOX_LIMIT": str(OUTBOX_LIMIT)}
    stack.add_node("a", site="plant-a", start=False, env=env)
    stack.add_node("b", site="plant-b", start=False, env=env)
    stack.start_nodes()
    stack.add_machines(["a", "b"], [MACHINE])
    other = {"a": "b", "b": "a"}
    made: dict[str, list[str]] = {"a": [], "b": []}

    def correct(node: str, text: str) -> None:
        r = stack.http(node, "POST", "/corrections", json={"machine_id": "press-1",
                                                           "text": text})
        assert r.status_code == 201, f"{node}: {r.status_code} {r.text[:300]}"
        made[node].append(r.json()["id"])

    # Warm: a correction each way goes through before the fault.
    for n in ("a", "b"):
        correct(n, f"before the outage, at {n}: coupling bolt re-torqued")
    wait_for(lambda: len(stack.central_correction_ids()) == 2, 90, "the first two in PG")
    pids = {n: stack.nodes[n].process.pid for n in ("a", "b")}
    central_pid = stack.central.proc.pid if stack.central.proc else None
    workers = stack.central.worker_pids()

    stack.broker.stop()
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < OUTAGE_S:
        node = "ab"[i % 2]
        correct(node, f"during the outage #{i} at {node}: sensor X was loose")
        i += 1
        time.sleep(POST_EVERY_S)
    during = sum(len(v) for v in made.values()) - 2
    assert during >= min(OUTAGE_S / POST_EVERY_S * 0.5, 2 * OUTBOX_LIMIT + 2), during
    # Nothing went anywhere: central saw none of them (they wait in the outboxes).
    assert len(stack.central_correction_ids()) == 2
    stack.broker.start()
    back = time.monotonic()

    every = set(made["a"]) | set(made["b"])
    wait_for(lambda: set(stack.central_correction_ids()) == every, 180,
             "every correction in Postgres after the broker's return")
    in_pg = time.monotonic() - back
    for n in ("a", "b"):
        wait_for(lambda n=n: set(made[n]) <= set(stack.correction_ids(other[n], "press-1")),
                 180, f"{n}'s corrections at {other[n]}")
    at_peers = time.monotonic() - back

    # Exactly once: Postgres (duplicates would show as repeated ids) and both briefings.
    ids = stack.central_correction_ids()
    assert len(ids) == len(set(ids)) == len(every)
    for n in ("a", "b"):
        brief = stack.correction_ids(n, "press-1")
        assert len(brief) == len(set(brief)) == len(every) and set(brief) == every, n
        # The outbox went past its bound while the broker was away, and said so.
        log = stack.nodes[n].process.log_path
        assert log is not None
        assert "above its limit" in log.read_text(errors="replace"), f"no outbox alert at {n}"

    # Nobody was restarted: each reconnected by itself.
    assert {n: stack.nodes[n].process.pid for n in ("a", "b")} == pids
    assert all(stack.nodes[n].running for n in ("a", "b"))
    assert stack.central.proc is not None and stack.central.proc.pid == central_pid
    assert stack.central.running and stack.central.worker_pids() == workers
    print(f"\nbroker down {OUTAGE_S:.0f} s, {during} corrections made meanwhile; all in PG "
          f"{in_pg:.1f} s and at the other plant {at_peers:.1f} s after its return")
