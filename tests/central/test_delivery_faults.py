"""Exactly-once in effect through faults, with ``rae-central serve`` as a real process
(two ingest workers, the vector indexer on a local Qdrant folder), a real mosquitto and
PostgreSQL: one worker killed mid-stream, a broker restart, a whole-central crash. Each
fault is shown to land while messages were in flight: at its moment some of the stream
had been acked by central, the chunk just published had not, and the rest was still to
be sent. Each time every correction is in Postgres once, in Qdrant once, and reached the
other plant: a real ``rae-edge serve`` node, which acked applying each one (central owes
it nothing) and holds each exactly once in its DuckDB (counted, not a set)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from bench.nodeproc import NodeProcess
from rae_central.vectors import VectorStore, default_embedder
from rae_edge.store.duck import DuckStore
from rae_sync.envelope import Envelope
from rae_sync.messages import CorrectionMsg
from tests.central.conftest import Central
from tests.central.edge_sim import EdgeSim, wait_for
from tests.central.serve_proc import ServeProc

pytestmark = pytest.mark.faults

N = 300


@dataclass(frozen=True)
class AtFault:
    """The stream at the moment of the fault."""

    sent: int  # published, the broker's PUBACK back
    acked: int  # acked by central (stored)
    total: int


def _stream(edge: EdgeSim, envs: list[Envelope], fault_at: int, fault: Callable[[], None],
            ) -> AtFault:
    """Publishes in chunks of 25. Once ``fault_at`` messages are out and central has
    acked some of them, publishes one more chunk and runs ``fault`` at once, with that
    chunk in flight; then the rest. Returns the counts taken just before the fault."""
    ids = [e.message_id for e in envs]
    at: AtFault | None = None
    for i in range(0, len(envs), 25):
        if at is None and i >= fault_at:
            before = set(ids[:i])
            wait_for(lambda: before & edge.acked, timeout=60,  # noqa: B023 (used at once)
                     what="central acking part of the stream")
            edge.send(envs[i:i + 25])  # raises if the broker is away: not expected here
            with edge.lock:
                acked = len(set(ids) & edge.acked)
            at = AtFault(sent=i + len(envs[i:i + 25]), acked=acked, total=len(envs))
            fault()
            continue
        try:
            edge.send(envs[i:i + 25])
        except Exception:
            time.sleep(0.3)  # broker away: deliver_all sends what is not acked
        time.sleep(0.02)
    assert at is not None, "the stream ended before the fault"
    return at


def _landed_in_flight(at: AtFault) -> None:
    """Some of the stream was stored before the fault, the chunk just published was not
    yet acked, and more was sent after it."""
    assert 0 < at.acked < at.sent < at.total, at


def _check_exactly_once(central: Central, serve: ServeProc, a: EdgeSim, b: NodeProcess,
                        envs: list[Envelope]) -> None:
    a.deliver_all(timeout=120)
    ids = {e.message_as(CorrectionMsg).correction.id for e in envs}
    engine = central.store.engine
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id FROM corrections WHERE tenant_id = 'acme'")
                            ).scalars().all()
    assert len(rows) == len(set(rows)) == len(ids) and set(rows) == ids
    with engine.connect() as conn:  # plant A's messages (plant B sends its own: acks...)
        from_a = conn.execute(sa.text("SELECT count(*) FROM messages WHERE node_id = "
                                      "'node-a'")).scalar_one()
    assert from_a == len(envs)
    # the receiving plant acked applying each one: central owes it nothing more
    def owed() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM fanout WHERE node_id = 'node-b'")).scalar_one())

    wait_for(lambda: owed() == 0, timeout=420, what="every correction applied at plant B")
    b.stop()
    duck = DuckStore(b.data_dir / "node.duckdb")
    try:
        at_b = Counter(str(r[0]) for r in duck.query("SELECT id FROM corrections"))
    finally:
        duck.close()
    assert set(at_b) == ids and all(n == 1 for n in at_b.values()), "each once at plant B"
    with engine.connect() as conn:
        wait_for(lambda: conn.execute(sa.text(
            "SELECT count(*) FROM corrections WHERE embedded_at IS NULL")).scalar_one() == 0,
            timeout=120, what="every correction embedded")
    serve.stop()  # a local Qdrant folder admits one process: read it after serve is gone
    emb = default_embedder()
    vs = VectorStore(central.settings.vectors.qdrant, embedder_tag=emb.tag, dim=emb.dim)
    try:
        in_qdrant = vs.memory_ids("acme", "correction")
        assert len(in_qdrant) == len(ids) and set(in_qdrant) == ids
    finally:
        vs.close()


def _plant_b(central: Central) -> NodeProcess:
    """Plant B as a real node on the identity central issued (tenant, site, node and
    broker from it)."""
    data = central.folder / "plant-b" / "data"
    data.mkdir(parents=True, exist_ok=True)
    return NodeProcess(data, extra_args=["--enroll", str(central.identities["b"]),
                                         "--mqtt-url", central.broker.url]).start()


def _setup(central: Central) -> tuple[ServeProc, EdgeSim, NodeProcess, list[Envelope]]:
    serve = ServeProc(central, workers=2).start()
    a, b = central.edge("a"), _plant_b(central)
    probe = [a.correction("probe: is central listening?")]
    a.deliver_all(timeout=60)  # both workers' shared subscriptions are in place by now
    envs = probe + [a.correction(f"bearing {i} ran hot: check the grease line") for i in range(N)]
    return serve, a, b, envs


def test_one_of_two_workers_killed_mid_stream(central: Central) -> None:
    serve, a, b, envs = _setup(central)
    try:
        victims = serve.worker_pids()
        assert len(victims) == 2
        _landed_in_flight(_stream(a, envs[1:], N // 3,
                                  lambda: os.kill(victims[0], signal.SIGKILL)))
        _check_exactly_once(central, serve, a, b, envs)
    finally:
        serve.kill()
        a.close()
        b.kill9()


def test_broker_restart_mid_stream(central: Central) -> None:
    serve, a, b, envs = _setup(central)
    try:
        def restart() -> None:
            central.broker.stop()
            threading.Timer(2.0, central.broker.start).start()

        _landed_in_flight(_stream(a, envs[1:], N // 3, restart))
        wait_for(lambda: central.broker.running, what="the broker back")
        _check_exactly_once(central, serve, a, b, envs)
    finally:
        serve.kill()
        a.close()
        b.kill9()


def test_central_crash_and_restart_mid_stream(central: Central) -> None:
    serve, a, b, envs = _setup(central)
    try:
        def crash() -> None:
            serve.kill()
            threading.Timer(1.0, serve.start).start()

        _landed_in_flight(_stream(a, envs[1:], N // 3, crash))
        wait_for(lambda: serve.proc is not None and serve.proc.poll() is None, timeout=90,
                 what="central back")
        _check_exactly_once(central, serve, a, b, envs)
    finally:
        serve.kill()
        a.close()
        b.kill9()
