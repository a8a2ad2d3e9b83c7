"""Runs ``rae-central serve`` as a real process for fault and browser tests. It gets the
owner's ``--database-url`` and connects, as central does, as the application's login role
(``rae_central_app``, created by the migration) that row-level security binds."""

from __future__ import annotations

import json
import subprocess
import sys

from rae_sync.supervisor import Part, StartError, children, http_ok
from tests.central.conftest import Central
from tests.fixtures.mosquitto import free_port

ADMIN_TOKEN = "test-admin-token-0123456789"  # the operator's: fleet health, no content
#: each tenant's own console token (its nodes, dead letters with payloads, corrections)
TENANT_TOKENS = {"acme": "test-acme-console-token-0123", "globex": "test-globex-token-0123"}


class ServeProc:
    """``rae-central serve`` as a process group, a :class:`rae_sync.supervisor.Part`."""

    def __init__(self, central: Central, workers: int = 2) -> None:
        self.central = central
        self.workers = workers
        self.port = free_port()
        self.part: Part | None = None
        self.log = central.folder / f"serve-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.part.proc if self.part is not None else None

    def start(self, timeout: float = 90) -> ServeProc:
        s = self.central.settings
        env = {"RAE_CENTRAL_ADMIN__TOKEN": ADMIN_TOKEN,
               "RAE_CENTRAL_ADMIN__TENANT_TOKENS": json.dumps(TENANT_TOKENS),
               "RAE_CENTRAL_INGEST__GAP_GRACE_S": "5", "RAE_CENTRAL_VECTORS__BATCH_SIZE": "64",
               "RAE_CENTRAL_ALLOW_PLAIN_MQTT": "true"}  # loopback broker of the tests
        cmd = [sys.executable, "-m", "rae_central.cli", "serve", "--database-url",
               s.database_url, "--qdrant", s.vectors.qdrant, "--mqtt-url", str(s.mqtt_url),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers",
               str(self.workers), "--signing-key", str(s.signing_key_file)]
        self.part = Part("rae-central serve", cmd, self.log, env=env,
                         die_with_parent=False).start()
        try:
            self.part.wait_until(lambda: http_ok(f"{self.url}/health")
                                 and len(self.worker_pids()) >= self.workers,
                                 "/health answer with its workers", timeout)
        except StartError as exc:
            raise RuntimeError(str(exc)) from exc
        return self

    def worker_pids(self) -> list[int]:
        """The serve process's worker children (multiprocessing spawn, so python)."""
        assert self.part is not None
        return children(self.part.pid, b"multiprocessing", b"resource_tracker")

    def kill(self) -> None:
        """SIGKILL to serve and its workers: a crash of the whole of central."""
        if self.part is not None and self.part.running:
            self.part.kill()

    def stop(self) -> None:
        if self.part is not None and self.part.running:
            self.part.signal_stop(group=True)
            self.part.wait_stopped(timeout=30)
