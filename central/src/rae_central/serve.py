"""``rae-central serve``: the whole of central in one command.

- N ingest worker processes (:func:`rae_central.worker.run_worker`), supervised: a worker
  that dies is started again (its unacknowledged messages went back to the broker, which
  hands them to the surviving workers of the shared subscription meanwhile);
- the vector indexer thread (it owns the Qdrant client: a local Qdrant folder admits one
  process);
- the admin sync console and its JSON API (uvicorn).

Everything connects as the application's login role (``app_database_url``), never the
owner: a superuser or owner connection is refused at start (:mod:`rae_central.rls`).
The database must be at this code's schema (``rae-central migrate`` first); a newer or an
unmigrated database is refused at start.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
from dataclasses import asdict
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from rae_central.config import CentralSettings

log = logging.getLogger(__name__)


class WorkerSupervisor:
    """Keeps ``settings.ingest.workers`` worker processes alive."""

    def __init__(self, settings: CentralSettings) -> None:
        self.settings = settings
        self._ctx = mp.get_context("spawn")
        self.procs: list[BaseProcess] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _spawn(self, i: int) -> BaseProcess:
        from rae_central.worker import run_worker

        p = self._ctx.Process(target=run_worker, args=(self.settings, i),
                              name=f"rae-central-worker-{i}", daemon=True)
        p.start()
        return p

    def start(self) -> None:
        self.procs = [self._spawn(i) for i in range(self.settings.ingest.workers)]
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor",
                                        daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            for i, p in enumerate(self.procs):
                if not p.is_alive():
                    log.warning("ingest worker %s exited (code %s): starting it again",
                                p.name, p.exitcode)
                    self.procs[i] = self._spawn(i)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()


def serve(settings: CentralSettings) -> int:
    import uvicorn

    from rae_central.admin.app import create_app
    from rae_central.db.engine import make_engine
    from rae_central.db.migrate import check_current
    from rae_central.rls import check_app_role
    from rae_central.store import CentralStore
    from rae_central.vectors import VectorIndexer, VectorStore, default_embedder

    # The console and the indexer connect as the application's role, like the workers.
    engine = make_engine(settings.app_url(), application_name="rae-central-serve")
    check_app_role(engine)
    check_current(engine)
    store = CentralStore(engine)
    indexer: VectorIndexer | None = None
    vstore: VectorStore | None = None
    supervisor: WorkerSupervisor | None = None
    try:
        if settings.vectors.enabled:
            emb = default_embedder()
            where = settings.vectors.qdrant
            if not where.startswith(("http://", "https://", ":memory:")):
                Path(where).mkdir(parents=True, exist_ok=True)
            vstore = VectorStore(where, embedder_tag=emb.tag, dim=emb.dim,
                                 collection=settings.vectors.collection)
            indexer = VectorIndexer(engine, vstore, emb, batch_size=settings.vectors.batch_size)
            indexer.start()
        if settings.mqtt_url:
            supervisor = WorkerSupervisor(settings)
            supervisor.start()
        else:
            log.warning("no mqtt_url: central serves the console but ingests nothing")

        def stats() -> dict[str, Any]:
            return asdict(indexer.stats) if indexer else {}

        token = settings.admin.token.get_secret_value() if settings.admin.token else None
        app = create_app(store, token, indexer_stats=stats, tenant_tokens={
            t: v.get_secret_value() for t, v in settings.admin.tenant_tokens.items()},
            away_after_s=settings.ingest.away_after_s)
        a = settings.admin  # HTTPS whenever a certificate is set (required off loopback)
        log.info("admin console on %s://%s:%s/", "https" if a.tls_cert else "http", a.host,
                 a.port)
        uvicorn.run(app, host=a.host, port=a.port, log_level="warning",
                    ssl_certfile=str(a.tls_cert) if a.tls_cert else None,
                    ssl_keyfile=str(a.tls_key) if a.tls_key else None)
        return 0
    finally:
        if supervisor:
            supervisor.stop()
        if indexer:
            indexer.stop()
        if vstore:
            vstore.close()
        engine.dispose()
