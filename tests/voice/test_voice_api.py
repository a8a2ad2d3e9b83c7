"""Voice notes through the real HTTP API, the real Whisper model and real stores: upload,
transcript, confirm (or auto-confirm) into a correction that search and briefings show."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import shared_data
from tests.voice import speech
from tests.voice.conftest import TENANT, VoiceApi

JFK = ("And so my fellow Americans, ask not what your country can do for you, ask what you "
       "can do for your country.")
NOTE = "Error E404 again, sensor X was actually loose, not broken."


def corrections(api: VoiceApi) -> list[tuple[str, str, str | None, str | None]]:
    return [(str(r[0]), str(r[1]), r[2], r[3]) for r in api.node.duck.query(
        "SELECT id, method, audio_sha256, target_id FROM corrections ORDER BY id")]


def outbox_corrections(api: VoiceApi) -> list[dict[str, object]]:
    return [p for _, _, kind, p in api.node.duck.outbox_peek(1000) if kind == "correction"]


def searchable(api: VoiceApi, correction_id: str, query: str, machine_id: str) -> bool:
    """The correction is a hit of ``GET /api/v1/search`` for the machine."""
    r = api.client.get("/api/v1/search", headers=api.headers(),
                       params={"q": query, "machine_id": machine_id, "k": 20})
    assert r.status_code == 200, r.text
    return correction_id in {h["id"] for h in r.json()["hits"]}


def briefing(api: VoiceApi, machine_id: str) -> dict[str, Any]:
    """What a later scan of the machine shows (``GET /machines/{code}/briefing``)."""
    r = api.client.get(f"/api/v1/machines/{machine_id}/briefing", headers=api.headers())
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_jfk_flac_becomes_a_confirmed_correction(api: VoiceApi) -> None:
    path = shared_data("audio", "jfk.flac")
    r = api.upload(path)
    assert r.status_code == 202, r.text
    note = r.json()
    assert note["status"] == "queued" and note["audio_format"] == "flac"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert note["audio_sha256"] == sha
    stored = api.node.data_dir / "audio" / sha[:2] / f"{sha}.flac"
    assert stored.read_bytes() == path.read_bytes()  # the original, before the 202

    draft = api.wait(note["id"])
    assert draft["status"] == "draft", draft
    assert speech.wer(JFK, draft["transcript"]) <= 0.05, draft["transcript"]
    assert draft["draft"]["text"] == draft["transcript"]
    assert corrections(api) == []  # a draft is not memory yet

    r = api.confirm(note["id"])
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "confirmed"
    c = done["correction"]
    assert c["text"] == draft["transcript"] and c["method"] == "voice"
    assert c["audio_sha256"] == sha and c["author"] == "tech-anna"
    assert corrections(api) == [(c["id"], "voice", sha, None)]
    assert [p["id"] for p in outbox_corrections(api)] == [c["id"]]
    assert searchable(api, c["id"], "fellow Americans country", "press-1")
    # A later scan of the machine shows it (a general note: it amends no incident).
    shown = {x["id"]: x for x in briefing(api, "press-1")["corrections"]}
    assert shown[c["id"]]["text"] == c["text"] and shown[c["id"]]["method"] == "voice"
    # The tablets watching press-1 were told: transcript ready, then the correction.
    pushed = [(m.type, m.payload) for m in api.node.push.since(TENANT, ["press-1"], 0)]
    assert ("voice_note", {"machine_id": "press-1", "voice_note_id": note["id"],
                           "status": "draft", "transcript": draft["transcript"]}) in pushed
    assert any(t == "correction" and p["correction"]["id"] == c["id"] for t, p in pushed)
    # Confirming again is the same correction, not a second one.
    again = api.confirm(note["id"])
    assert again.status_code == 200 and again.json()["correction"]["id"] == c["id"]
    assert len(corrections(api)) == 1 and len(outbox_corrections(api)) == 1


@pytest.mark.parametrize("suffix", [".webm", ".ogg", ".m4a", ".mp3", ".wav"])
def test_tablet_formats_with_plant_vocabulary(api: VoiceApi, say: Callable[..., Path],
                                              suffix: str) -> None:
    """What browsers (webm/ogg opus), iOS (m4a/aac) and recorder apps send is decoded; the
    machine's vocabulary makes "E404" and "sensor X" come out as the plant writes them."""
    r = api.upload(say(NOTE, suffix))
    assert r.status_code == 202, r.text
    assert r.json()["audio_format"] == suffix.lstrip(".")
    note = api.wait(r.json()["id"])
    assert note["status"] == "draft", note
    assert "E404" in note["transcript"] and "sensor X" in note["transcript"], note
    assert speech.wer(NOTE, note["transcript"]) <= 0.25, note["transcript"]


def test_edited_confirmation_amends_an_incident_and_shows_in_briefing(
        api: VoiceApi, say: Callable[..., Path]) -> None:
    target = next(i for i in api.incidents if i.error_code == "E404")
    r = api.upload(say("The receiver was fine, connector X4 was loose.", ".ogg"),
                   target_id=target.id)
    assert r.status_code == 202, r.text
    note = api.wait(r.json()["id"])
    assert note["status"] == "draft" and note["target_id"] == target.id
    edited = "The receiver was fine: connector X4 was loose. Re-seat X4 before replacing LC-2."
    # Another technician may not confirm it; a supervisor may, with edited text.
    assert api.confirm(note["id"], who="tech2").status_code == 403
    r = api.confirm(note["id"], who="super", text=edited)
    assert r.status_code == 200, r.text
    c = r.json()["correction"]
    assert c["text"] == edited and c["target_id"] == target.id
    assert c["author"] == "tech-anna"  # who said it; the supervisor only confirmed
    assert api.note(note["id"])["transcript"] != edited  # the raw transcript is kept
    # Once confirmed, a different text is a conflict (amend the correction instead).
    assert api.confirm(note["id"], text="something else").status_code == 409
    assert searchable(api, c["id"], "connector X4 loose", "press-1")
    # A later scan shows the incident amended by the spoken correction.
    amended = next(i for i in briefing(api, "press-1")["incidents"] if i["id"] == target.id)
    assert [x["id"] for x in amended["corrections"]] == [c["id"]]
    assert amended["corrections"][0]["text"] == edited and amended["superseded"]
    # Another tenant sees nothing of it.
    assert api.client.get(f"/api/v1/voice-notes/{note['id']}",
                          headers=api.headers("other")).status_code == 404


def test_same_upload_twice_is_one_note(api: VoiceApi, say: Callable[..., Path]) -> None:
    path = say("Photo eye B7 was dirty, cleaning the reflector fixed it.", ".webm")
    first = api.upload(path, machine_id="conveyor-3")
    second = api.upload(path, machine_id="conveyor-3")
    assert first.status_code == 202 and second.status_code == 200, second.text
    assert first.json()["id"] == second.json()["id"]
    assert api.node.duck.query("SELECT count(*) FROM voice_notes")[0][0] == 1
    assert len(list((api.node.data_dir / "audio").glob("*/*.webm"))) == 1
    # The same recording for another machine is not silently a second note.
    other = api.upload(path, machine_id="robot-4")
    assert other.status_code == 409 and first.json()["id"] in other.text


def test_auto_confirm_makes_a_searchable_correction(make_api: Callable[..., VoiceApi],
                                                    say: Callable[..., Path]) -> None:
    api = make_api(auto_confirm=True)
    text = "The coolant pump fuse F3 blew again, the pump is drawing too much current."
    r = api.upload(say(text, ".m4a"), machine_id="robot-4")
    assert r.status_code == 202, r.text
    note = api.wait(r.json()["id"], until=("confirmed", "failed"))
    assert note["status"] == "confirmed", note
    c = note["correction"]
    assert c["method"] == "voice" and "F3" in c["text"]
    assert searchable(api, c["id"], "coolant pump fuse", "robot-4")


def test_unknown_machine_or_target_stores_nothing(api: VoiceApi,
                                                  say: Callable[..., Path]) -> None:
    path = say(NOTE)
    r = api.upload(path, machine_id="press-99")
    assert r.status_code == 404 and "press-99" in r.json()["error"]["message"]
    r = api.upload(path, target_id="inc_nope")
    assert r.status_code == 404 and "inc_nope" in r.json()["error"]["message"]
    other_machine = next(i for i in api.incidents if i.machine_id == "robot-4")
    r = api.upload(path, target_id=other_machine.id)
    assert r.status_code == 422 and "robot-4" in r.json()["error"]["message"]
    r = api.upload(path, who="other")  # another tenant's token: its machines only
    assert r.status_code == 404
    assert api.node.duck.query("SELECT count(*) FROM voice_notes")[0][0] == 0
    assert not list((api.node.data_dir / "audio").glob("*/*.*"))
    r = api.client.post("/api/v1/voice-notes", files={"audio": ("a.wav", path.read_bytes())},
                        data={"machine_id": "press-1"})
    assert r.status_code == 401


def test_full_queue_never_blocks_the_api(make_api: Callable[..., VoiceApi],
                                         say: Callable[..., Path]) -> None:
    """Queue of one: every upload is answered at once; notes that did not fit wait in
    DuckDB and are transcribed later."""
    api = make_api(queue_size=1)
    texts = [s for _, s in speech.SENTENCES[:4]]
    ids = []
    for t in texts:
        started = time.monotonic()
        r = api.upload(say(t, ".ogg"))
        assert r.status_code == 202, r.text
        assert time.monotonic() - started < 5.0  # answered, not queued behind the model
        ids.append(r.json()["id"])
    for nid, t in zip(ids, texts, strict=True):
        note = api.wait(nid)
        assert note["status"] == "draft", note
        assert speech.wer(t, note["transcript"]) <= 0.5, (t, note["transcript"])


def test_real_speech_follows_each_machines_vocabulary(api: VoiceApi, tmp_path: Path) -> None:
    """hotwords.mp3 (a person naming "ComfyUI"): on a machine whose incidents name it, the
    transcript spells it the plant's way; on a machine that never heard of it, it does not
    (the vocabulary is per machine)."""
    from rae_sync.domain import Incident, Machine

    path = shared_data("audio", "hotwords.mp3")
    api.node.duck.upsert_machines([Machine(tenant_id=TENANT, id="render-2",
                                           name="Render station 2", qr_code="QR-render-2")])
    api.node.duck.insert_incidents([
        Incident(tenant_id=TENANT, machine_id="render-2", occurred_at=f"2026-03-0{d}T10:00",
                 symptom=s, action=a)
        for d, s, a in [(1, "ComfyUI workflow crashed on start", "Restarted ComfyUI"),
                        (2, "ComfyUI queue stuck", "Cleared the ComfyUI node cache")]])
    r = api.upload(path, machine_id="render-2")
    assert r.status_code == 202, r.text
    note = api.wait(r.json()["id"])
    assert note["status"] == "draft" and "ComfyUI" in note["transcript"], note
    # The same words for the conveyor (re-encoded: a different recording, a new note).
    other = api.upload(speech.encode(path, tmp_path / "same.ogg"), machine_id="conveyor-3")
    assert other.status_code == 202, other.text
    plain = api.wait(other.json()["id"])
    assert plain["status"] == "draft" and "ComfyUI" not in plain["transcript"], plain
    assert "comfy" in plain["transcript"].lower()
