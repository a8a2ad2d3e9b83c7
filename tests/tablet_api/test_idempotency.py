"""``Idempotency-Key`` on the write routes (feedback too), through real HTTP on a real node.

The same key twice stores once and answers the first result (status and body), per tenant;
concurrent duplicates store once; a key reused for another body is refused; the kept
answers survive a restart of the node on the same data folder.
"""

from __future__ import annotations

import io
import math
import os
import struct
import uuid
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from bench.nodeproc import NodeProcess
from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token
from rae_sync.domain import Machine, Role
from rae_tablet_api.app import create_app
from tests.fixtures.live_app import serve

MACHINE = {"id": "PRESS-07", "name": "Hydraulic press 7", "qr_code": "QR:P1:PRESS-07",
           "site": "plant-1", "line": "L2"}
INCIDENT = {"machine_id": "PRESS-07", "occurred_at": "2026-11-12T08:30:00+00:00",
            "error_code": "E404", "symptom": "Ram stops mid-stroke", "action": "Reseated X"}


@dataclass
class Live:
    url: str
    node: EdgeNode
    tokens: dict[str, str]

    def post(self, path: str, who: str = "acme", key: str | None = None,
             **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return httpx.post(f"{self.url}/api/v1{path}", headers=headers, timeout=60, **kw)

    def count(self, table: str, tenant: str = "acme") -> int:
        return int(self.node.duck.query(f"SELECT count(*) FROM {table} WHERE tenant_id = ?",
                                        [tenant])[0][0])


@contextmanager
def running(data: Path, tokens: dict[str, str] | None = None) -> Iterator[Live]:
    node = EdgeNode(config.load(None, data_dir=data, node={"tenant_id": "acme"}))
    if tokens is None:
        tokens = {t: create_token(node.duck, t, Role.SUPERVISOR, f"{t} tablet")
                  for t in ("acme", "globex")}
        tokens.update({f"{t}_admin": create_token(node.duck, t, Role.ADMIN, f"{t} admin")
                       for t in ("acme", "globex")})
    try:
        with serve(create_app(node)) as url:
            yield Live(url, node, tokens)
    finally:
        node.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with running(tmp_path_factory.mktemp("idem") / "node") as lv:
        for who in ("acme", "globex"):
            r = httpx.post(f"{lv.url}/api/v1/machines", json=[MACHINE], timeout=30,
                           headers={"Authorization": f"Bearer {lv.tokens[who + '_admin']}"})
            assert r.status_code in (200, 201), r.text
        yield lv


def _wav(seconds: float = 1.0, hz: int = 440) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i
                                                                     / 16_000)))
                               for i in range(int(16_000 * seconds))))
    return buf.getvalue()


def test_correction_twice_with_one_key_is_stored_once(live: Live) -> None:
    key = str(uuid.uuid4())
    body = {"machine_id": "PRESS-07", "text": "Sensor X was loose, not broken: tighten it"}
    before = live.count("corrections")
    first = live.post("/corrections", key=key, json=body)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = live.post("/corrections", key=key, json=body)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert live.count("corrections") == before + 1
    # A new key is a new correction (the same text twice is a person's choice).
    other = live.post("/corrections", key=str(uuid.uuid4()), json=body)
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert live.count("corrections") == before + 2
    # Without a key, nothing changes from before.
    plain = live.post("/corrections", json=body)
    assert plain.status_code == 201 and "idempotent-replayed" not in plain.headers
    assert live.count("corrections") == before + 3


def test_keys_are_per_tenant(live: Live) -> None:
    key = "shared-" + uuid.uuid4().hex
    body = {"machine_id": "PRESS-07", "text": "Hydraulic oil topped up, level was low"}
    a = live.post("/corrections", who="acme", key=key, json=body)
    g = live.post("/corrections", who="globex", key=key, json=body)
    assert (a.status_code, g.status_code) == (201, 201)
    assert "idempotent-replayed" not in g.headers
    assert a.json()["id"] != g.json()["id"]


def test_concurrent_duplicates_store_once(live: Live) -> None:
    key = str(uuid.uuid4())
    body = {"machine_id": "PRESS-07", "text": "Guard door switch bypassed by a cable tie"}
    before = live.count("corrections")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: live.post("/corrections", key=key, json=body),
                                range(8)))
    assert [r.status_code for r in answers] == [201] * 8, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in answers) == 7
    assert live.count("corrections") == before + 1


def test_incidents_replay_the_first_answer_not_a_duplicate_count(live: Live) -> None:
    key = str(uuid.uuid4())
    batch = [dict(INCIDENT, occurred_at="2026-11-20T02:10:00+00:00")]
    first = live.post("/incidents", key=key, json=batch)
    assert first.status_code == 200, first.text
    assert first.json()["added"] == 1
    again = live.post("/incidents", key=key, json=batch)
    assert again.status_code == 200 and again.json() == first.json()  # added 1, as at first
    no_key = live.post("/incidents", json=batch)  # content dedup answers "duplicate"
    assert no_key.json()["added"] == 0 and no_key.json()["duplicates"] == 1


def test_voice_note_replay_answers_the_first_202(live: Live) -> None:
    key = str(uuid.uuid4())
    files = {"audio": ("note.wav", _wav(), "audio/wav")}
    first = live.post("/voice-notes", key=key, files=files, data={"machine_id": "PRESS-07"})
    assert first.status_code == 202, first.text
    again = live.post("/voice-notes", key=key, files=files, data={"machine_id": "PRESS-07"})
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert live.count("voice_notes") == 1


def test_key_reused_for_another_request_or_malformed_is_refused(live: Live) -> None:
    key = str(uuid.uuid4())
    before = live.count("corrections")
    ok = live.post("/corrections", key=key, json={"machine_id": "PRESS-07", "text": "one"})
    assert ok.status_code == 201
    other = live.post("/corrections", key=key, json={"machine_id": "PRESS-07", "text": "two"})
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    elsewhere = live.post("/incidents", key=key, json=[INCIDENT])
    assert elsewhere.status_code == 422
    for bad in ("", "x" * 256, "bad key"):
        r = live.post("/corrections", key=bad, json={"machine_id": "PRESS-07", "text": "t"})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["code"] == "invalid_idempotency_key"
    assert live.count("corrections") == before + 1


def test_refused_request_is_not_kept_and_can_be_sent_again(live: Live) -> None:
    key = str(uuid.uuid4())
    bad = live.post("/corrections", key=key, json={"machine_id": "PRESS-07"})
    assert bad.status_code == 400, bad.text  # validation: kept, same answer again
    assert live.post("/corrections", key=key, json={"machine_id": "PRESS-07"}).json() == \
        bad.json()
    # A token refused (401) keeps nothing: the same key works once the token is right.
    key2 = str(uuid.uuid4())
    body = {"machine_id": "PRESS-07", "text": "Coolant nozzle re-aimed"}
    r = httpx.post(f"{live.url}/api/v1/corrections", json=body, timeout=30,
                   headers={"Authorization": "Bearer rae_wrong", "Idempotency-Key": key2})
    assert r.status_code == 401
    good = live.post("/corrections", key=key2, json=body)
    assert good.status_code == 201 and "idempotent-replayed" not in good.headers


def test_kept_answers_survive_a_restart(tmp_path: Path) -> None:
    key = str(uuid.uuid4())
    body = {"machine_id": "PRESS-07", "text": "Bearing greased, noise gone"}
    with running(tmp_path / "node") as lv:
        tokens = lv.tokens
        httpx.post(f"{lv.url}/api/v1/machines", json=[MACHINE], timeout=30,
                   headers={"Authorization": f"Bearer {tokens['acme_admin']}"})
        first = lv.post("/corrections", key=key, json=body)
        assert first.status_code == 201
    with running(tmp_path / "node", tokens) as lv:
        again = lv.post("/corrections", key=key, json=body)
        assert again.status_code == 201 and again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert lv.count("corrections") == 1


def test_a_verdict_sent_again_with_its_key_is_stored_once(live: Live) -> None:
    """The tablet's offline queue resends a "this fixed it" with the key it was queued with
    (after a lost answer): one verdict, the first answer with its tally again."""
    r = live.post("/incidents", who="acme_admin", json=[{**INCIDENT, "symptom": "Verdict"}])
    assert r.status_code == 200, r.text
    memory_id = r.json()["ids"][0]
    key = str(uuid.uuid4())
    body = {"memory_id": memory_id, "verdict": "fixed"}
    before = live.count("feedback")
    first = live.post("/feedback", key=key, json=body)
    assert first.status_code == 201, first.text
    assert first.json()["memory"] == {"id": memory_id, "confirmations": 1, "plants": 1}
    again = live.post("/feedback", key=key, json=body)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert live.count("feedback") == before + 1


# The node process dies (os._exit: no cleanup, no answer, like kill -9) at the moment its
# answer would be kept, i.e. after the handler's write has committed.
DIE_BEFORE_KEEPING = '''
import os
from rae_edge.store import idempotency

def _die(*args, **kwargs):
    os._exit(137)

idempotency.IdempotencyStore.complete = _die
'''


@pytest.mark.faults
def test_node_killed_between_the_write_and_its_kept_answer(tmp_path: Path) -> None:
    data = tmp_path / "node"
    node = EdgeNode(config.load(None, data_dir=data, node={"tenant_id": "acme"}))
    node.duck.upsert_machines([Machine(tenant_id="acme", id="PRESS-07", name="Press 7",
                                       qr_code="QR:P1:PRESS-07", line="L2")])
    token = create_token(node.duck, "acme", Role.TECHNICIAN, "tablet")
    node.close()
    fault = tmp_path / "fault"
    fault.mkdir()
    (fault / "sitecustomize.py").write_text(DIE_BEFORE_KEEPING)
    path = os.pathsep.join(p for p in (str(fault), os.environ.get("PYTHONPATH")) if p)
    key = str(uuid.uuid4())
    body = {"machine_id": "PRESS-07", "text": "Killed mid-answer: ram guide re-shimmed"}
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}

    dying = NodeProcess(data, env={"PYTHONPATH": path}).start()
    try:
        with pytest.raises(httpx.HTTPError):  # the connection drops: no answer
            httpx.post(f"{dying.url}/api/v1/corrections", json=body, headers=headers,
                       timeout=60)
        assert dying.proc is not None and dying.proc.wait(timeout=30) == 137
    finally:
        dying.kill9()
    back = NodeProcess(data, port=dying.port).start()
    try:
        url = f"{back.url}/api/v1/corrections"
        retry = httpx.post(url, json=body, headers=headers, timeout=60)
        again = httpx.post(url, json=body, headers=headers, timeout=60)
        other = httpx.post(url, json={**body, "text": "another note"}, headers=headers,
                           timeout=60)
    finally:
        back.stop()
    con = duckdb.connect(str(data / "node.duckdb"), read_only=True)
    stored = con.execute("SELECT id, text FROM corrections WHERE tenant_id = 'acme'").fetchall()
    con.close()
    assert [text for _, text in stored] == [body["text"]]  # once: the retry wrote nothing
    assert retry.status_code == 200, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    answer = retry.json()
    assert answer["replayed"] is True and answer["answer_lost"] is True
    assert answer["stored"] == [{"fact": "correction", "ids": [stored[0][0]]}]
    assert (again.status_code, again.json()) == (200, answer)  # kept from now on
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
