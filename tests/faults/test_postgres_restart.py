"""PostgreSQL restarted under load, with ``rae-central serve`` as a real process (two
ingest workers, the vector indexer), a real mosquitto and a PostgreSQL of this test's own
(so its restarts disturb no other test).

A simulated edge (:class:`tests.central.edge_sim.EdgeSim`: a real enrolled identity, signed
envelopes, a real MQTT 5 session, re-sending until central's ack) publishes corrections
steadily while the database is, in turn, restarted cleanly (``pg_ctl stop -m fast``),
stopped as a crash (``-m immediate``) and its postmaster killed with SIGKILL. Afterwards:

- every message central acknowledged before a fault is in Postgres once the database is
  back (an ack means it was committed: none is lost with the server);
- every correction is in Postgres exactly once, in Qdrant once, and reached the other plant;
- central was never restarted: the same ``serve`` process and the same two worker
  processes throughout, ingesting again by themselves once the database is back.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from rae_central.embedded_pg import PgServer
from rae_central.vectors import VectorStore, default_embedder
from rae_sync.envelope import Envelope
from rae_sync.messages import CorrectionMsg
from tests.central.conftest import Central
from tests.central.edge_sim import EdgeSim, wait_for
from tests.central.serve_proc import ServeProc
from tests.fixtures.postgres import running_pg

pytestmark = pytest.mark.faults

RATE_PER_S = 60  # corrections per second the edge publishes while the faults happen
DOWN_S = 3.0  # how long the database stays away each time


@pytest.fixture
def own_pg() -> Iterator[PgServer]:
    yield from running_pg("rae-pg-fault-")


@pytest.fixture
def pg_url(own_pg: PgServer) -> str:
    """Overrides the session server's database: central's fixture runs on ``own_pg``."""
    return own_pg.create_database()


class Load:
    """Publishes corrections from edge ``a`` at a steady rate until stopped; a failed
    publish is simply left for :meth:`EdgeSim.deliver_all` (the outbox rule)."""

    def __init__(self, edge: EdgeSim) -> None:
        self.edge = edge
        self.envs: list[Envelope] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        step = 10 / RATE_PER_S  # ten at a time
        while not self._stop.is_set():
            batch = [self.edge.correction(f"bearing {i + j} ran hot: check the grease line")
                     for j in range(10)]
            i += 10
            self.envs.extend(batch)
            with contextlib.suppress(Exception):
                self.edge.send(batch)
            self._stop.wait(step)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _stored_ids(engine: sa.Engine, ids: set[str]) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text(
            "SELECT message_id FROM messages WHERE message_id = ANY(:ids)"),
            {"ids": list(ids)}).scalars())


def test_postgres_restarted_killed_and_crashed_under_load(own_pg: PgServer,
                                                          central: Central) -> None:
    serve = ServeProc(central, workers=2).start()
    a, b = central.edge("a"), central.edge("b")
    try:
        a.correction("probe: is central listening?")
        a.deliver_all(timeout=60)  # both workers subscribed, the pipeline warm
        serve_pid = serve.proc.pid if serve.proc else None
        workers_before = serve.worker_pids()

        def crash_kill() -> None:
            own_pg.kill()

        faults: list[tuple[str, Callable[[], None]]] = [
            ("restart (fast shutdown)", lambda: own_pg.stop("fast")),
            ("stop -m immediate", lambda: own_pg.stop("immediate")),
            ("SIGKILL of the postmaster", crash_kill),
        ]
        checked_acks = 0
        with Load(a):
            for name, fault in faults:
                time.sleep(3)  # load flows with the database up
                with a.lock:
                    acked_before = set(a.acked)
                fault()
                time.sleep(DOWN_S)  # the load goes on against a database that is away
                _start_again(own_pg)
                # Everything central acknowledged before the fault survived it.
                engine = central.store.engine
                engine.dispose()  # the test's own pool held connections to the old server
                missing = acked_before - _stored_ids(engine, acked_before)
                assert not missing, f"after {name}: {len(missing)} acked messages not in PG"
                checked_acks += len(acked_before)
                assert serve.proc is not None and serve.proc.poll() is None, \
                    f"central exited after {name}: {serve.log.read_text()[-3000:]}"
            time.sleep(3)  # and the load flows again after the last fault
        envs = [*a.outbox.values()]
        assert len(envs) >= RATE_PER_S * 12, f"only {len(envs)} corrections published"
        a.deliver_all(timeout=180)  # central acks every one: the workers are back

        # Exactly once in Postgres: every correction, no duplicate, no extra message.
        ids = {e.message_as(CorrectionMsg).correction.id for e in envs}
        engine = central.store.engine
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id FROM corrections WHERE tenant_id = 'acme'")
                                ).scalars().all()
        assert len(rows) == len(set(rows)) == len(ids) and set(rows) == ids
        assert central.store.count("messages") == len(envs)
        wait_for(lambda: {e.message_as(CorrectionMsg).correction.id
                          for e in b.received(CorrectionMsg)} == ids, timeout=120,
                 what="every correction at the other plant")
        with engine.connect() as conn:
            wait_for(lambda: conn.execute(sa.text(
                "SELECT count(*) FROM corrections WHERE embedded_at IS NULL")).scalar_one() == 0,
                timeout=240, what="every correction embedded (the indexer recovered)")

        # Central recovered by itself: the same serve process throughout and the same two
        # worker processes: they waited for the database (``_retry_db``) instead of dying
        # and being started again by serve's supervisor (which an earlier version did: the
        # per-batch key refresh was outside the retry).
        assert serve.proc is not None and serve.proc.pid == serve_pid
        assert serve.proc.poll() is None
        workers_after = serve.worker_pids()
        respawns = serve.log.read_text(errors="replace").count("exited (code")
        assert workers_after == workers_before and respawns == 0, (
            f"workers {workers_before} -> {workers_after}, {respawns} restarted by serve: "
            f"{serve.log.read_text(errors='replace')[-3000:]}")
        print(f"\n{len(envs)} corrections through 3 database faults; {checked_acks} acks "
              f"checked against PG right after the faults; worker pids {workers_before} -> "
              f"{workers_after}, {respawns} worker restarts by the supervisor")
        serve.stop()  # a local Qdrant folder admits one process: read it after serve
        emb = default_embedder()
        vs = VectorStore(central.settings.vectors.qdrant, embedder_tag=emb.tag, dim=emb.dim)
        try:
            in_qdrant = vs.memory_ids("acme", "correction")
            assert len(in_qdrant) == len(ids) and set(in_qdrant) == ids
        finally:
            vs.close()
    finally:
        serve.kill()
        a.close()
        b.close()


def _start_again(server: PgServer) -> None:
    """``pg_ctl start``; after a SIGKILL the old backends may hold the shared memory for a
    moment, so a refused start is tried again."""
    deadline = time.monotonic() + 60
    while True:
        try:
            server.start()
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
