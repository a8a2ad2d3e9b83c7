"""A plant killed (SIGKILL) in the middle of catching up on what it missed: a real
``rae-edge serve`` node, ``rae-central serve``, mosquitto and PostgreSQL.

Plant B is away while plant A (a signed-message publisher) makes corrections; B starts and
applies them in batches; it is killed while some are applied and acked and others still
owed (read from central just before the kill and checked just after). After a restart, B
holds each correction exactly once (counted, not a set), has pushed none twice, central
owes it nothing, and each is in B's search index exactly once: applied-but-unindexed
ones are picked up by the start-up sweep.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rae_edge.store.duck import DuckStore
from tests.central.edge_sim import EdgeSim
from tests.fixtures.stack import Stack, wait_for

pytestmark = pytest.mark.faults

N = 3000  # a dozen batches of 256 at B: the kill lands after the first


def _owed(stack: Stack) -> int:
    return int(stack.sql("SELECT count(*) FROM fanout WHERE node_id = 'node-b'")[0][0])


def _indexed_ids(lance_dir: Path) -> list[str]:
    import lancedb

    from rae_edge.store.lance import TABLE

    try:
        table = lancedb.connect(str(lance_dir)).open_table(TABLE)
    except Exception:  # not created yet
        return []
    rows = table.search().where("kind = 'correction'").select(["id"]).limit(10 * N).to_list()
    return [str(r["id"]) for r in rows]


def _pushed(b: Any) -> float:
    """B's push messages so far (``/metrics``, loopback needs no token); 0 until it answers."""
    try:
        r = httpx.get(f"{b.url}/metrics", timeout=2)
    except httpx.HTTPError:
        return 0.0
    for line in r.text.splitlines():
        if line.startswith("rae_push_messages_total "):
            return float(line.split()[1])
    return 0.0


def _stored(data_dir: Path) -> list[str]:
    duck = DuckStore(data_dir / "node.duckdb")
    try:
        return [str(r[0]) for r in duck.query("SELECT id FROM corrections")]
    finally:
        duck.close()


def test_node_killed_mid_catch_up_ends_with_each_correction_once(
        stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    # small windows: the catch-up goes in many rounds, so the kill lands inside it
    stack = stack_factory(central_env={"RAE_CENTRAL_INGEST__FANOUT_WINDOW": "20",
                                       "RAE_CENTRAL_INGEST__FANOUT_SWEEP_S": "1"})
    b = stack.add_node("b", site="plant-b")
    b.stop()
    a = EdgeSim.from_file(stack.enroll("acme", "plant-a", "node-a", tmp_path / "a.json"),
                          stack.broker.url).connect()
    try:
        envs = [a.correction(f"while B was away {i}: idler pulley {i % 7} replaced")
                for i in range(N)]
        a.send(envs)
        a.deliver_all(timeout=300)
    finally:
        a.close()
    made = [e.payload["correction"]["id"] for e in envs]
    wait_for(lambda: _owed(stack) == N, 120, "every correction owed to B")

    failed: list[BaseException] = []

    def start() -> None:
        try:
            b.start()
        except BaseException as e:  # the kill may come before its API answers
            failed.append(e)

    starter = threading.Thread(target=start)
    starter.start()
    # Killed as soon as B's first batch is applied, read from B itself (its pushes on
    # /metrics): central's own count lags B by its ack commits, and B applies a batch of
    # 256 in tens of milliseconds on a quiet machine.
    wait_for(lambda: _pushed(b) > 0, 300, "B applying its first batch", every=0.005)
    b.kill9()
    starter.join(130)
    applied = len(_stored(b.data_dir))
    time.sleep(1.0)  # acks B sealed before it died and central has not committed yet
    after_kill = _owed(stack)
    assert 0 < applied < N and after_kill >= N - applied, (
        f"killed mid catch-up: {applied} of {N} applied at B, {after_kill} still owed")

    b.start()
    wait_for(lambda: _owed(stack) == 0, 300, "B caught up after its restart")
    lance_dir = b.data_dir / "lance"
    wait_for(lambda: len(_indexed_ids(lance_dir)) >= N, 600, "every correction indexed at B")
    b.stop()
    assert Counter(_indexed_ids(lance_dir)) == Counter(made), "each indexed once at B"
    duck = DuckStore(b.data_dir / "node.duckdb")
    try:
        stored = Counter(str(r[0]) for r in duck.query("SELECT id FROM corrections"))
        pushed = Counter(json.loads(p)["correction"]["id"] for (p,) in duck.query(
            "SELECT payload FROM push_messages WHERE type = 'correction'"))
    finally:
        duck.close()
    assert stored == Counter(made), "each correction once at B"
    assert set(pushed) <= set(made) and all(n == 1 for n in pushed.values()), \
        "no correction pushed twice (one cut off by the kill is seen on reload)"
