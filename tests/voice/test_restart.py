"""Restart safety with a real ``rae-edge serve`` process: notes accepted (202) before a
kill -9 are transcribed after the restart, and their recordings are intact."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import httpx
import pytest

from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token
from rae_sync.domain import Role
from tests.security.serve import RAE_EDGE, free_port
from tests.voice import speech
from tests.voice.conftest import TENANT, seed_plant

pytestmark = pytest.mark.faults


def start(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*RAE_EDGE, "serve", "--host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(data_dir)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "RAE_NODE__TENANT_ID": TENANT})
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)


def test_notes_accepted_before_kill_9_are_transcribed_after_restart(
        tmp_path: Path, say: Callable[..., Path]) -> None:
    data = tmp_path / "node"
    node = EdgeNode(config.load(None, data_dir=data, node={"tenant_id": TENANT}))
    seed_plant(node, index=False)
    token = create_token(node.duck, TENANT, Role.TECHNICIAN, "tech-anna")
    node.close()
    headers = {"Authorization": f"Bearer {token}"}

    # Three notes of about 15 s each: transcribing them takes seconds, so the kill lands
    # while some are still queued (checked below, not assumed).
    notes: list[tuple[Path, str]] = []
    for i in range(3):
        sentences = [s for _, s in speech.SENTENCES[i * 4:(i + 1) * 4]]
        path = speech.concat([say(s) for s in sentences], tmp_path / f"note{i}.wav")
        notes.append((speech.encode(path, tmp_path / f"note{i}.ogg"), " ".join(sentences)))

    port = free_port()
    log = tmp_path / "serve.log"
    proc = start(data, port, log)
    ids = []
    try:
        for path, _ in notes:
            r = httpx.post(f"http://127.0.0.1:{port}/api/v1/voice-notes", headers=headers,
                           files={"audio": (path.name, path.read_bytes(), "audio/ogg")},
                           data={"machine_id": "press-1"}, timeout=30)
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    con = duckdb.connect(str(data / "node.duckdb"), read_only=True)
    before = dict(con.execute("SELECT id, status FROM voice_notes").fetchall())
    con.close()
    assert set(before) == set(ids)  # every 202 was on disk
    assert any(s in ("queued", "transcribing") for s in before.values()), before
    for path, _ in notes:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        assert (data / "audio" / sha[:2] / f"{sha}.ogg").read_bytes() == path.read_bytes()

    with _Restarted(data, tmp_path / "serve2.log") as base:
        deadline = time.monotonic() + 180
        for nid, (_, text) in zip(ids, notes, strict=True):
            while True:
                n = httpx.get(f"{base}/api/v1/voice-notes/{nid}", headers=headers,
                              timeout=10).json()
                if n["status"] not in ("queued", "transcribing"):
                    break
                assert time.monotonic() < deadline, n
                time.sleep(0.5)
            assert n["status"] == "draft", n
            assert speech.wer(text, n["transcript"]) <= 0.3, (text, n["transcript"])


class _Restarted:
    """``rae-edge serve`` again on the same data folder (tenant from the environment)."""

    def __init__(self, data: Path, log: Path) -> None:
        self.data, self.log = data, log
        self.port = free_port()

    def __enter__(self) -> str:
        self.proc = start(self.data, self.port, self.log)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
