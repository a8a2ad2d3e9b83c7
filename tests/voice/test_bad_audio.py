"""Bad audio gets a clear 4xx naming the problem (or a failed status with the reason when
it is only found by transcription); nothing is stored for it and nothing else changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.voice import speech
from tests.voice.conftest import VoiceApi


def nothing_stored(api: VoiceApi) -> None:
    assert api.node.duck.query("SELECT count(*) FROM voice_notes")[0][0] == 0
    assert api.node.duck.query("SELECT count(*) FROM corrections")[0][0] == 0
    assert not [p for p in (api.node.data_dir / "audio").rglob("*") if p.is_file()]


def corrupt(say: Callable[..., Path], suffix: str, tmp: Path) -> Path:
    """A real note whose second half is overwritten with random bytes."""
    data = bytearray(say("The belt was loose, I tensioned the belt.", suffix).read_bytes())
    start = len(data) // 2
    data[start:] = np.random.default_rng(7).integers(0, 256, len(data) - start,
                                                     dtype=np.uint8).tobytes()
    out = tmp / f"corrupt{suffix}"
    out.write_bytes(bytes(data))
    return out


def test_empty_upload(api: VoiceApi) -> None:
    r = api.upload(None, content=b"", filename="note.webm")
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "audio_empty"
    nothing_stored(api)


def test_not_audio(api: VoiceApi) -> None:
    r = api.upload(None, content=b"%PDF-1.7\n" + b"this is a manual, not a recording\n" * 50,
                   filename="manual.pdf")
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "not_audio" and "audio" in err["message"]
    assert "/tmp" not in err["message"]  # no server paths in answers
    nothing_stored(api)


@pytest.mark.parametrize("suffix", [".ogg", ".webm", ".flac", ".mp3"])
def test_corrupt_audio(api: VoiceApi, say: Callable[..., Path], tmp_path: Path,
                       suffix: str) -> None:
    r = api.upload(corrupt(say, suffix, tmp_path))
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "audio_corrupt" and "damaged" in err["message"], err
    nothing_stored(api)


def test_silent_recording(api: VoiceApi, tmp_path: Path) -> None:
    r = api.upload(speech.silence(tmp_path / "silence.wav", 4.0))
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "no_speech" and "silent" in err["message"]
    nothing_stored(api)


def test_too_long(make_api: Callable[..., VoiceApi], say: Callable[..., Path],
                  tmp_path: Path) -> None:
    api = make_api(max_seconds=3.0)
    long_note = speech.concat([say(s) for _, s in speech.SENTENCES[:2]], tmp_path / "l.wav")
    r = api.upload(long_note)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "audio_too_long" and "3 s" in err["message"]
    nothing_stored(api)


def test_too_big(make_api: Callable[..., VoiceApi], tmp_path: Path) -> None:
    api = make_api(max_mb=1)
    noise = (np.random.default_rng(1).normal(0, 3000, 16_000 * 40)).astype(np.int16)
    big = speech.write_wav(tmp_path / "big.wav", noise, 16_000)  # 1.3 MB
    r = api.upload(big)
    assert r.status_code == 413
    assert "1 MB" in r.json()["error"]["message"]
    nothing_stored(api)
    assert not list((api.node.data_dir / "audio" / "tmp").iterdir())


@pytest.mark.parametrize("body", [b"machine_id=press-1", b""])
def test_not_multipart(api: VoiceApi, body: bytes) -> None:
    r = api.client.post("/api/v1/voice-notes", content=body, headers={
        **api.headers(), "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 422 and "multipart" in r.json()["error"]["message"]
    nothing_stored(api)


def test_missing_fields(api: VoiceApi, say: Callable[..., Path]) -> None:
    r = api.client.post("/api/v1/voice-notes", headers=api.headers(),
                        files={"audio": ("a.wav", say("Reset Q1.").read_bytes())})
    assert r.status_code == 422 and "machine_id" in r.json()["error"]["message"]
    r = api.client.post("/api/v1/voice-notes", headers=api.headers(),
                        data={"machine_id": "press-1"}, files={"other": ("x", b"x")})
    assert r.status_code == 422 and "audio" in r.json()["error"]["message"]
    nothing_stored(api)


def test_noise_without_speech_fails_with_reason(api: VoiceApi, tmp_path: Path,
                                                 say: Callable[..., Path]) -> None:
    """Audible but speechless (fan hum and hiss): accepted, then failed "no speech" by the
    voice activity detector; the next note is transcribed as usual."""
    rate = 16_000
    t = np.arange(rate * 5) / rate
    hum = 2500 * np.sin(2 * np.pi * 50 * t) + np.random.default_rng(3).normal(0, 300, t.size)
    r = api.upload(speech.write_wav(tmp_path / "hum.wav", hum.astype(np.int16), rate))
    assert r.status_code == 202, r.text
    note = api.wait(r.json()["id"])
    assert note["status"] == "failed" and "no speech" in note["reason"], note
    assert api.confirm(note["id"]).status_code == 409  # nothing to confirm without text
    assert api.node.duck.query("SELECT count(*) FROM corrections")[0][0] == 0
    ok = api.upload(say("I reset Q1 and the conveyor started.", ".webm"), machine_id="conveyor-3")
    assert api.wait(ok.json()["id"])["status"] == "draft"
