"""A history test in the spirit of Jepsen: three plants correct continuously for
``RAE_HISTORY_SECONDS`` (default 180) under a random fault schedule, and the recorded
history must hold at the end.

Everything is a real process on the secure deployment an operator builds
(:func:`tests.fixtures.secure_stack.secure_stack`): ``rae-central pki init``, ``enroll``,
``broker-config`` (mosquitto with TLS, client certificates, per-node ACL),
``rae-central serve`` (two ingest workers), PostgreSQL, and three
``rae-edge serve --enroll FILE`` nodes, one of them under libfaketime for its clock skew.

- writers (:mod:`tests.e2e.history_load`): one per plant, posting corrections with an
  ``Idempotency-Key`` each (varied machines, texts and amended incidents), retrying a
  failed post with the same key, recording each acknowledgement (2xx) with its time;
- nemesis (:mod:`tests.e2e.history_faults`): from ``random.Random(seed)``: SIGKILL and
  SIGSTOP/SIGCONT of the broker, of a central worker, of PostgreSQL and of nodes; a node
  offline for two thirds of the run (two minutes) with the broker killed meanwhile; one
  node's clock one to three minutes ahead (inside the 5-minute window: nothing may be refused);
- checker (:mod:`tests.e2e.history_check`): after healing and a bounded wait for
  quiescence, every acknowledged correction is exactly once at central and at each of the
  three plants (lists counted), with the same stamp and in the same relative order
  everywhere, and once in each plant's push log; no retry stored a second copy; every
  part (broker, central worker, PostgreSQL, a node, the offline node, the clock) was hit
  at least once while corrections were in flight (acknowledged before the fault began,
  reaching central or the faulted node after; for the offline node also those the others
  acknowledged while it was away, which must reach it after; each fault waits for a fresh
  ack first, but a 3 s stop can still fall between two writes), the broker kill inside the
  node's offline window.

A node killed between a correction's write and its kept ``Idempotency-Key`` answer is the
case that once (seed 171451979) made a retry store a second correction; the key is now
marked in the write's own transaction, and the retry gets the ``answer_lost`` replay
naming what was stored, so any copy fails the test.

The seed is printed and is in every failure message: ``RAE_HISTORY_SEED=<seed>`` replays
the schedule (timings of a real run vary, the faults and their order do not).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.history_check import Row, central_rows, landings, node_rows, problems, retry_copies
from tests.e2e.history_faults import ALL_KINDS, PART_OF, Nemesis, schedule
from tests.e2e.history_load import Writer
from tests.faults.test_clock_setback import LIBFAKETIME, SLEEP_SHIM
from tests.fixtures.postgres import PgServer
from tests.fixtures.secure_stack import SecureBroker, secure_stack
from tests.fixtures.stack import Stack, wait_for

pytestmark = pytest.mark.faults

PLANTS = ["a", "b", "c"]
MACHINES = [{"id": f"line-{i}", "name": f"Line {i}", "qr_code": f"QR-LINE-{i}", "site": "any"}
            for i in range(4)]
INCIDENTS = [{"machine_id": f"line-{i}", "occurred_at": f"2026-0{i + 1}-03T08:15:00+00:00",
              "error_code": f"E40{i}", "symptom": f"feeder {i} jams, sensor reads zero",
              "action": f"Replaced sensor {i}"} for i in range(3)]
QUIESCE_S = 150.0  # bounded wait for every acknowledged correction everywhere


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("RAE_HISTORY_SEED") or random.randrange(2**32))
    print(f"\nhistory seed: {value} (replay: RAE_HISTORY_SEED={value})")
    return value


@pytest.fixture
def secure_plants(tmp_path: Path, pg_server: PgServer, seed: int
                  ) -> Iterator[tuple[Stack, SecureBroker, Path, str]]:
    """Central, broker and three plants on TLS with per-node ACL; the skewed plant (drawn
    from the seed) runs under libfaketime reading its offset from the yielded file."""
    if LIBFAKETIME is None:
        pytest.skip("libfaketime is not installed (Debian package 'faketime')")
    began = time.monotonic()
    skewed = random.Random(seed).choice(PLANTS)
    skew_file = tmp_path / "faketime-offset"
    skew_file.write_text("+0\n")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SLEEP_SHIM)
    fake_env = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": str(skew_file),
                "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(shim), os.environ.get("PYTHONPATH", "")) if p)}
    try:
        with secure_stack(tmp_path, pg_server, PLANTS, {skewed: fake_env}) as (stack, broker):
            print(f"stack up in {time.monotonic() - began:.0f}s")
            yield stack, broker, skew_file, skewed
    finally:
        if not pg_server.is_running():
            pg_server.start()


def test_every_acknowledged_correction_everywhere_once_in_one_order_under_faults(
        secure_plants: tuple[Stack, SecureBroker, Path, str], seed: int) -> None:
    stack, broker, skew_file, skewed = secure_plants
    duration = float(os.environ.get("RAE_HISTORY_SECONDS", "180"))
    rng = random.Random(seed)
    assert rng.choice(PLANTS) == skewed  # the fixture's draw, made again
    stack.add_machines(PLANTS, MACHINES)
    ids = [str(i) for i in stack.post_incidents("a", INCIDENTS)["ids"]]
    for p in PLANTS[1:]:  # incident ids derive from content: the same at every plant
        assert stack.post_incidents(p, INCIDENTS)["ids"] == ids
    targets: dict[str, list[str]] = {str(m["id"]): [] for m in MACHINES}
    for inc, i in zip(INCIDENTS, ids, strict=True):
        targets[str(inc["machine_id"])].append(i)
    faults = schedule(rng, duration, PLANTS, skewed)
    tag = f"[seed {seed}]"
    print(f"{tag} skewed plant {skewed}; schedule:\n  " + "\n  ".join(map(str, faults)))

    writers = {p: Writer(p, stack.nodes[p].url, stack.nodes[p].token, targets,
                         str(seed)).start()
               for p in PLANTS}
    nemesis = Nemesis(stack, broker, skew_file, faults,
                      last_ack=lambda plant: writers[plant].last_ack_at())
    t0 = time.time()
    try:
        nemesis.run(t0)
        while time.time() < t0 + duration:
            time.sleep(0.2)
    finally:
        for w in writers.values():
            w.stop()
        nemesis.heal()
    load_s = time.time() - t0
    for w in writers.values():  # the post in flight at the stop, answered now or never
        w.join(60)
    for w in writers.values():
        w.give_up()
    print(f"load and heal {load_s:.0f}s, writers done at {time.time() - t0:.0f}s")
    acks = [a for w in writers.values() for a in w.log.acks]
    unacked = [k for w in writers.values() for k in w.log.unacked]
    refused = [r for w in writers.values() for r in w.log.refused]
    acked_ids = {a.id for a in acks}
    assert not refused, f"{tag} posts refused: {refused[:5]}"
    assert acks, f"{tag} nothing was acknowledged"

    # Quiescence: central holds every acknowledged correction and owes no node anything.
    t_heal = time.time()
    quiet = True
    try:
        wait_for(lambda: acked_ids <= set(stack.central_correction_ids())
                 and stack.sql("SELECT count(*) FROM fanout")[0][0] == 0, QUIESCE_S,
                 "every correction at central and acked by every node", every=1.0)
    except AssertionError:
        quiet = False  # the diff below says what is missing where
    quiesce_s = time.time() - t_heal

    places: dict[str, list[Row]] = {"central": central_rows(stack.engine)}
    stoppers = [threading.Thread(target=stack.nodes[p].stop) for p in PLANTS]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join()
    pushed: dict[str, list[str]] = {}
    for p in PLANTS:  # each plant's DuckDB, now that its node let go of it
        places[p], pushed[p] = node_rows(stack.nodes[p].data_dir / "node.duckdb")
    plant_of = {p: stack.nodes[p].node_id for p in PLANTS}
    copies = retry_copies(acks, places["central"], faults)
    found = problems(acks, unacked, places, pushed, frozenset())
    if not quiet:
        found.insert(0, f"not quiescent within {QUIESCE_S:.0f}s: "
                        f"{stack.sql('SELECT count(*) FROM fanout')[0][0]} down rows unacked")
    landed = landings(faults, acks, places, plant_of, skewed)
    summary = (f"{tag} {len(acks)} acknowledged "
               f"({dict(Counter(a.plant for a in acks))}), {len(unacked)} unacknowledged, "
               f"{sum(w.log.errors for w in writers.values())} failed attempts retried; "
               f"load {load_s:.0f}s, quiescence {quiesce_s:.0f}s; rows "
               f"{ {k: len(v) for k, v in places.items()} }\n  "
               + "\n  ".join(map(str, landed)) + "\nnemesis:\n  " + "\n  ".join(nemesis.log))
    print(summary)
    assert quiet and not found, (f"{tag} history broken:\n  " + "\n  ".join(found)
                                 + f"\n{summary}")
    [off] = [f for f in faults if f.kind == "node-offline"]
    [bk] = [f for f in faults if f.kind == "broker-kill"]
    assert off.start < bk.start and bk.end < off.end, (
        f"{tag} the broker was not killed while {off.target} was offline\n{summary}")
    kinds = {x.fault.kind for x in landed if x.landed}
    parts = {PART_OF[k] for k in kinds}
    assert parts == set(PART_OF.values()), (
        f"{tag} parts never hit while corrections were in flight: "
        f"{set(PART_OF.values()) - parts} (kinds that missed: {set(ALL_KINDS) - kinds})"
        f"\n{summary}")
    assert not copies, (f"{tag} a retry with the same Idempotency-Key stored a second "
                        f"correction: {copies}\n{summary}")
