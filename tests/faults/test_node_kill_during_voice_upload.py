"""kill -9 of a serving node (``rae-edge serve``) while a voice note is being uploaded.

A first note is uploaded whole (202: acknowledged); a second one is streamed slowly and
the node is killed when about half of its bytes are in (its spool file is seen on disk
first, so the kill really lands mid-upload). After the restart on the same data folder:

- the half-written upload never became anything: no voice note, no stored recording, and
  its spool file is gone;
- the acknowledged note is transcribed (a draft whose transcript matches what was said)
  and its recording is intact;
- the second note, sent again whole, is accepted as a new note (nothing half-kept blocks it).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

from bench.nodeproc import NodeProcess
from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token
from rae_sync.domain import Role
from tests.voice import speech
from tests.voice.conftest import TENANT, seed_plant

pytestmark = pytest.mark.faults

BOUNDARY = "rae-fault-boundary-0123456789"


def _multipart(name: str) -> tuple[bytes, bytes]:
    """What goes before and after the audio bytes in a multipart body (machine_id, then
    the ``audio`` part named ``name``)."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"machine_id\"\r\n\r\n"
            f"press-1\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"audio\"; "
            f"filename=\"{name}\"\r\nContent-Type: audio/ogg\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head, tail


def _stored_audio(data: Path) -> list[Path]:
    return [p for p in (data / "audio").glob("*/*") if p.parent.name != "tmp"]


def test_kill_9_during_voice_upload(tmp_path: Path, say: Callable[..., Path]) -> None:
    data = tmp_path / "node"
    node = EdgeNode(config.load(None, data_dir=data, node={"tenant_id": TENANT}))
    seed_plant(node, index=False)
    token = create_token(node.duck, TENANT, Role.TECHNICIAN, "tech-anna")
    node.close()
    headers = {"Authorization": f"Bearer {token}"}

    said = [s for _, s in speech.SENTENCES[:3]]
    whole = speech.encode(speech.concat([say(s) for s in said], tmp_path / "whole.wav"),
                          tmp_path / "whole.ogg")
    half_said = [s for _, s in speech.SENTENCES[3:9]]
    partial = speech.encode(speech.concat([say(s) for s in half_said],
                                          tmp_path / "partial.wav"), tmp_path / "partial.ogg")
    audio = partial.read_bytes()

    env = {"RAE_NODE__TENANT_ID": TENANT}
    proc = NodeProcess(data, env=env).start()
    base = proc.url
    r = httpx.post(f"{base}/api/v1/voice-notes", headers=headers, timeout=30,
                   files={"audio": (whole.name, whole.read_bytes(), "audio/ogg")},
                   data={"machine_id": "press-1"})
    assert r.status_code == 202, r.text
    acked_id = r.json()["id"]

    head, tail = _multipart(partial.name)
    cut = len(audio) // 2
    spool_seen: list[str] = []
    killed = threading.Event()

    def body() -> Iterator[bytes]:
        yield head
        for i in range(0, cut, 4096):
            yield audio[i:min(i + 4096, cut)]
        # Half is sent: wait until the node has spooled some of it, then kill it.
        deadline = time.monotonic() + 30
        while not (parts := list((data / "audio" / "tmp").glob("up-*.part"))):
            assert time.monotonic() < deadline, "the upload never reached the spool"
            time.sleep(0.05)
        time.sleep(0.5)
        spool_seen.extend(f"{p.name}:{p.stat().st_size}" for p in parts)
        proc.kill9()
        killed.set()
        yield audio[cut:]
        yield tail

    with pytest.raises(httpx.TransportError):
        httpx.post(f"{base}/api/v1/voice-notes", timeout=60, content=body(),
                   headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                            "Content-Length": str(len(head) + len(audio) + len(tail))})
    assert killed.is_set() and spool_seen, "the node was not killed mid-upload"

    con = duckdb.connect(str(data / "node.duckdb"), read_only=True)
    notes = [r[0] for r in con.execute("SELECT id FROM voice_notes").fetchall()]
    con.close()
    assert notes == [acked_id], notes  # the half upload is no record, the 202 one is
    partial_sha = hashlib.sha256(audio).hexdigest()
    assert not any(partial_sha in p.name for p in _stored_audio(data))

    proc2 = NodeProcess(data, env=env).start()
    try:
        assert not list((data / "audio" / "tmp").glob("up-*.part")), "spool left behind"
        deadline = time.monotonic() + 180
        while True:
            n = httpx.get(f"{proc2.url}/api/v1/voice-notes/{acked_id}", headers=headers,
                          timeout=10).json()
            if n["status"] not in ("queued", "transcribing"):
                break
            assert time.monotonic() < deadline, n
            time.sleep(0.5)
        assert n["status"] == "draft", n
        assert speech.wer(" ".join(said), n["transcript"]) <= 0.3, n["transcript"]
        whole_sha = hashlib.sha256(whole.read_bytes()).hexdigest()
        assert [p.name for p in _stored_audio(data)] == [f"{whole_sha}.ogg"]
        assert (data / "audio" / whole_sha[:2] / f"{whole_sha}.ogg").read_bytes() == \
            whole.read_bytes()
        # The interrupted note, sent again whole, is simply a new note.
        again = httpx.post(f"{proc2.url}/api/v1/voice-notes", headers=headers, timeout=30,
                           files={"audio": (partial.name, audio, "audio/ogg")},
                           data={"machine_id": "press-1"})
        assert again.status_code == 202, again.text
        assert again.json()["id"] != acked_id
    finally:
        proc2.stop()
    print(f"\nkilled with the spool at {spool_seen} of {len(audio)} bytes; the acked note "
          f"transcribed after restart")
