"""Fixtures for voice-note tests: a node holding a small plant's memory, tokens, an HTTP
client on the real app, and speech made by espeak-ng (cached per session)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token
from rae_sync.domain import Incident, Machine, Role
from rae_tablet_api.app import create_app
from tests.voice import speech

TENANT = "acme"
DONE = ("draft", "confirmed", "failed")


@pytest.fixture(scope="session")
def say(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``say(text, ".ogg")``: espeak-ng speech of ``text`` in that format (cached)."""
    if speech.ESPEAK is None:
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng)")
    root = tmp_path_factory.mktemp("speech")

    def make(text: str, suffix: str = ".wav", gap: int = 3) -> Path:
        key = hashlib.sha256(f"{text}|{gap}".encode()).hexdigest()[:16]
        wav = root / f"{key}.wav"
        if not wav.exists():
            speech.speak(text, wav, gap=gap)
        if suffix == ".wav":
            return wav
        out = root / f"{key}{suffix}"
        if not out.exists():
            speech.encode(wav, out)
        return out

    return make


def seed_plant(node: EdgeNode, index: bool = True) -> list[Incident]:
    machines = [Machine(tenant_id=TENANT, id=m, name=name, qr_code=f"QR-{m}")
                for m, (name, _) in speech.PLANT.items()]
    node.duck.upsert_machines(machines)
    incidents = [
        Incident(tenant_id=TENANT, machine_id=m, occurred_at=f"2026-0{1 + i % 8}-1{i % 9}T08:00",
                 error_code=code, symptom=symptom, action=action, source="test")
        for m, (_, rows) in speech.PLANT.items()
        for i, (code, symptom, action) in enumerate(rows)
    ]
    node.duck.insert_incidents(incidents)
    if index:
        node.indexer.index_incidents(incidents)
    return incidents


@dataclass
class VoiceApi:
    """The real app over a seeded node, with a token per role."""

    node: EdgeNode
    client: TestClient[Any]
    tokens: dict[str, str]
    incidents: list[Incident]

    def headers(self, who: str = "tech") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def upload(self, path: Path | None, machine_id: str = "press-1", who: str = "tech",
               target_id: str | None = None, content: bytes | None = None,
               filename: str | None = None) -> Any:
        data = {"machine_id": machine_id}
        if target_id:
            data["target_id"] = target_id
        body = content if content is not None else path.read_bytes() if path else b""
        name = filename or (path.name if path else "note.bin")
        return self.client.post("/api/v1/voice-notes", headers=self.headers(who),
                                files={"audio": (name, body, "application/octet-stream")},
                                data=data)

    def note(self, note_id: str, who: str = "tech") -> dict[str, Any]:
        r = self.client.get(f"/api/v1/voice-notes/{note_id}", headers=self.headers(who))
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait(self, note_id: str, until: tuple[str, ...] = DONE,
             timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            n = self.note(note_id)
            if n["status"] in until:
                return n
            assert time.monotonic() < deadline, f"note still {n['status']} after {timeout} s"
            time.sleep(0.2)

    def confirm(self, note_id: str, who: str = "tech", text: str | None = None) -> Any:
        body = {"text": text} if text is not None else None
        return self.client.post(f"/api/v1/voice-notes/{note_id}/confirm",
                                headers=self.headers(who), json=body)


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., VoiceApi]]:
    """``make_api(**voice_settings)``: a seeded node and a client on the real app."""
    opened: list[tuple[TestClient[Any], EdgeNode]] = []

    def make(index: bool = True, **voice: Any) -> VoiceApi:
        # Sync on (a broker URL, no identity: the agent does not run and the outbox keeps
        # what is queued), so confirmed notes are seen queued for central.
        settings = config.load(None, data_dir=tmp_path / f"node{len(opened)}",
                               node={"tenant_id": TENANT}, voice=voice or None,
                               sync={"mqtt_url": "mqtt://127.0.0.1:9"})
        node = EdgeNode(settings)
        incidents = seed_plant(node, index=index)
        tokens = {
            "tech": create_token(node.duck, TENANT, Role.TECHNICIAN, "tech-anna"),
            "tech2": create_token(node.duck, TENANT, Role.TECHNICIAN, "tech-ben"),
            "super": create_token(node.duck, TENANT, Role.SUPERVISOR, "sup-cleo"),
            "other": create_token(node.duck, "globex", Role.SUPERVISOR, "intruder"),
        }
        client = TestClient(create_app(node))
        client.__enter__()
        opened.append((client, node))
        return VoiceApi(node, client, tokens, incidents)

    yield make
    for client, _ in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Callable[..., VoiceApi]) -> VoiceApi:
    return make_api()
