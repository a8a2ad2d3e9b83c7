"""Runs ``rae-central serve`` as a real process for fault and browser tests. It gets the
owner's ``--database-url`` and connects, as central does, as the application's login role
(``rae_central_app``, created by the migration) that row-level security binds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.central.conftest import Central
from tests.fixtures.mosquitto import free_port

ADMIN_TOKEN = "test-admin-token-0123456789"  # the operator's: fleet health, no content
#: each tenant's own console token (its nodes, dead letters with payloads, corrections)
TENANT_TOKENS = {"acme": "test-acme-console-token-0123", "globex": "test-globex-token-0123"}


class ServeProc:
    def __init__(self, central: Central, workers: int = 2) -> None:
        self.central = central
        self.workers = workers
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = central.folder / f"serve-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> ServeProc:
        s = self.central.settings
        env = {**os.environ, "RAE_CENTRAL_ADMIN__TOKEN": ADMIN_TOKEN,
               "RAE_CENTRAL_ADMIN__TENANT_TOKENS": json.dumps(TENANT_TOKENS),
               "RAE_CENTRAL_INGEST__GAP_GRACE_S": "5", "RAE_CENTRAL_VECTORS__BATCH_SIZE": "64",
               "RAE_CENTRAL_ALLOW_PLAIN_MQTT": "true"}  # loopback broker of the tests
        cmd = [sys.executable, "-m", "rae_central.cli", "serve", "--database-url",
               s.database_url, "--qdrant", s.vectors.qdrant, "--mqtt-url", str(s.mqtt_url),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers",
               str(self.workers), "--signing-key", str(s.signing_key_file)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log.open("ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200 and \
                        len(self.worker_pids()) >= self.workers:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve did not come up: {self.log.read_text()[-3000:]}")
            time.sleep(0.3)

    def worker_pids(self) -> list[int]:
        """The serve process's worker children (multiprocessing spawn, so python)."""
        assert self.proc is not None
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                cmdline = (stat.parent / "cmdline").read_bytes()
                if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
                    pids.append(int(stat.parent.name))
        return sorted(pids)

    def kill(self) -> None:
        """SIGKILL to serve and its workers: a crash of the whole of central."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
