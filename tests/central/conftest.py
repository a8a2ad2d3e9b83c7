"""Central test set-up: a migrated database on the real PostgreSQL, a real mosquitto,
central's settings and enrolled node identities; an in-process ingest worker.

``Central.store`` is on the owner's connection (``database_url``, a superuser here): the
tests' view of every tenant. The worker, ``rae-central serve`` and ``Central.app_store()``
connect as the application's login role (``settings.app_url()``, created by the
migration), which row-level security binds."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rae_central.config import CentralSettings
from rae_central.db import migrate
from rae_central.db.engine import make_engine
from rae_central.enroll import enroll
from rae_central.store import CentralStore
from rae_central.worker import IngestWorker
from tests.central.edge_sim import EdgeSim, wait_for
from tests.fixtures.mosquitto import Mosquitto

NODES = {"a": ("acme", "plant-1", "node-a"), "b": ("acme", "plant-2", "node-b"),
         "x": ("globex", "plant-9", "node-x")}


@dataclass
class Central:
    settings: CentralSettings
    store: CentralStore
    broker: Mosquitto
    identities: dict[str, Path]
    folder: Path

    def edge(self, name: str) -> EdgeSim:
        return EdgeSim.from_file(self.identities[name], self.broker.url).connect()

    def app_store(self) -> CentralStore:
        """A store on the application's role, as the worker and the console use it
        (dispose its engine when done)."""
        return CentralStore(make_engine(self.settings.app_url(), pool_size=1))


@pytest.fixture
def central(pg_url: str, mosquitto: Mosquitto, tmp_path: Path) -> Iterator[Central]:
    migrate.upgrade(pg_url)
    settings = CentralSettings(
        database_url=pg_url, mqtt_url=mosquitto.url, allow_plain_mqtt=True,
        signing_key_file=tmp_path / "central-key.pem",
        ingest={"gap_grace_s": 0.3, "replay_every_s": 1.0, "fanout_sweep_s": 1.0},
        vectors={"qdrant": str(tmp_path / "qdrant")},
    )
    ids = {}
    for name, node in NODES.items():
        ids[name] = enroll(settings, node, tmp_path / f"{name}.identity.json")
    engine = make_engine(pg_url)
    yield Central(settings, CentralStore(engine), mosquitto, ids, tmp_path)
    engine.dispose()


@pytest.fixture
def worker(central: Central) -> Iterator[IngestWorker]:
    w = IngestWorker(central.settings, index=0)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    wait_for(lambda: w.transport.connected, timeout=15, what="the worker's connection")
    time.sleep(0.5)  # its shared subscription reaches the broker (first run: no session yet)
    yield w
    w.stop()
    t.join(timeout=15)
