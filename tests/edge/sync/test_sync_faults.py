"""Fault tests with real processes: an edge node killed with SIGKILL while its outbox is
full, then restarted, delivers every correction to central exactly once (deduplicated by
message id, as central's database does), with its seq contiguous."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rae_edge.store import DuckStore
from rae_sync.identity import NodeIdentity
from rae_sync.messages import CorrectionMsg
from rae_sync.signing import generate_key
from rae_sync.transport import PahoTransport
from tests.conftest import ROOT
from tests.edge.sync.central_stub import CentralStub
from tests.fixtures.mosquitto import Mosquitto

N = 3000


def _spawn(data: Path, ident: Path, port: int, fill: int = 0) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.edge.sync.edge_proc", "--data-dir", str(data),
         "--identity", str(ident), "--port", str(port), "--fill", str(fill)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == "ready":
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    out = proc.stdout.read() if proc.stdout else ""
    raise AssertionError(f"edge process did not start: {out}")


def _kill9(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    if proc.stdout:
        proc.stdout.close()


@pytest.mark.faults
def test_kill_9_with_a_full_outbox_then_restart_delivers_everything_once(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    central_key = generate_key()
    ident = NodeIdentity.issue("acme", "plant-1", "node-1", central_key.public_key())
    ident_file = tmp_path / "node.identity.json"
    ident.save(ident_file)
    central = CentralStub(PahoTransport("127.0.0.1", mosquitto.port, "central-stub"),
                          central_key, {ident.node: ident.public_key}, ack=False).start()
    data = tmp_path / "edge"
    try:
        proc = _spawn(data, ident_file, mosquitto.port, fill=N)
        # central receives but does not ack yet: the whole outbox is still owed
        assert central.wait_until(lambda c: len(c.of_type("correction")) >= N // 3, 60)
        _kill9(proc)
        duck = DuckStore(data / "node.duckdb")
        try:
            assert duck.outbox_depth() == N, "a killed node keeps every unacked row"
            sealed = duck.query("SELECT count(*) FROM sync_sent")[0][0]
        finally:
            duck.close()
        assert sealed >= N // 3
        first_ids = {e.message_id for e in central.of_type("correction")}

        central.acking.set()
        proc = _spawn(data, ident_file, mosquitto.port)
        try:
            assert central.wait_until(lambda c: len(c.of_type("correction")) >= N, 120), \
                f"central has {len(central.of_type('correction'))} of {N}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                line = proc.stdout.readline() if proc.stdout else ""
                if line.startswith("depth=0 "):
                    break
            else:
                raise AssertionError("the outbox did not drain after the acks")
        finally:
            _kill9(proc)
        envs = central.of_type("correction")
        ids = [e.message_as(CorrectionMsg).correction.id for e in envs]
        assert len(ids) == N and len(set(ids)) == N, "each correction under one message id"
        # what went out before the kill came again under the same ids: dedupe absorbs it
        assert first_ids <= {e.message_id for e in envs}
        assert central.deliveries > len(central.received)
        seqs = sorted(e.seq for e in central.received.values())
        assert seqs == list(range(1, len(seqs) + 1))
        duck = DuckStore(data / "node.duckdb")
        try:
            assert duck.outbox_depth() == 0
            assert duck.query("SELECT count(*) FROM corrections")[0][0] == N
        finally:
            duck.close()
    finally:
        central.stop()
