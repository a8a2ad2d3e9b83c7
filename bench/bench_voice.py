"""Voice notes: transcription speed and word error rate on the node's CPU, and the time
from upload to a searchable correction.

Figures (``python -m bench.bench_voice [--quick]``):
- speed of tiny.en (and base, where its packages were joined once) on jfk.flac and on a
  30 s espeak-ng note, as times faster than real time, beside the raw faster-whisper call
  (greedy, no VAD, no prompt) on the same audio: from CPU time (an upper bound of an idle
  node's wall time, held to the target) and from this run's wall clock;
- WER on ../shared/data/audio/jfk.flac;
- WER on maintenance sentences spoken by espeak-ng (made here, never committed), with the
  machine's vocabulary (prompt + code spelling) and without it;
- upload -> searchable correction for a 15 s note on an idle node with auto-confirm, through
  the real HTTP API (``GET /api/v1/search`` polled until the correction is a hit).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Row, main_for, row

ROOT = Path(__file__).resolve().parents[1]
JFK = ROOT.parent / "shared" / "data" / "audio" / "jfk.flac"
JFK_TEXT = ("And so my fellow Americans, ask not what your country can do for you, ask what you "
            "can do for your country.")


def _timed(fn: Any, repeat: int) -> tuple[float, float, Any]:
    """Median wall seconds and median process CPU seconds of ``repeat`` calls (after one
    warm-up call), and the last result."""
    out = fn()
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def _load() -> float:
    return os.getloadavg()[0]


def _speed_rows(name: str, audio: Path, seconds: float, label: str, repeat: int) -> list[Row]:
    """Speed from the process's CPU time and from the wall clock.

    The CPU time of a transcription bounds its wall time on an idle node from above (the
    work never waits on anything but the CPU; with two threads it takes less), so it is the
    figure held to the target; the wall clock of this run is beside it, with the load
    average, because the machine this runs on is shared with other work.
    """
    from rae_edge.voice.transcriber import Transcriber, load_model

    t = Transcriber(name)
    load = _load()
    wall, cpu, _ = _timed(lambda: t.transcribe(audio), repeat)
    model = load_model(name)

    def raw() -> str:
        segs, _ = model.transcribe(str(audio), language="en", beam_size=1)
        return " ".join(s.text for s in segs)

    raw_wall, raw_cpu, _ = _timed(raw, repeat)
    tiny = name == "tiny.en"
    rows = [
        row(f"{name} speed, {label}, CPU time", seconds / cpu, "x realtime",
            target=">= 10x" if tiny else None, baseline="raw greedy x",
            baseline_value=round(seconds / raw_cpu, 2),
            ok=(seconds / cpu >= 10) if tiny else None, higher_is_better=True,
            notes=f"{seconds:.1f} s of audio in {cpu:.2f} CPU s (median of {repeat}; beam 5, "
                  f"VAD on, int8); the raw greedy call without VAD {raw_cpu:.2f} CPU s"),
        row(f"{name} speed, {label}, wall now", seconds / wall, "x realtime",
            baseline="raw greedy x", baseline_value=round(seconds / raw_wall, 2),
            higher_is_better=True,
            notes=f"{wall:.2f} s wall on {os.cpu_count()} CPUs at load average {load:.1f} "
                  "(shared with other work)"),
    ]
    if tiny and seconds >= 29:
        rows.append(row(f"{name}: {seconds:.0f} s note, CPU time", cpu, "s",
                        target="<= 3 s", ok=cpu <= 3.0, notes=f"{wall:.2f} s wall now"))
    return rows


def _espeak_set(tmp: Path, n: int) -> list[tuple[str, str, Path]]:
    from tests.voice import speech

    out = []
    for i, (machine, text) in enumerate(speech.SENTENCES[:n]):
        out.append((machine, text, speech.speak(text, tmp / f"s{i}.wav")))
    return out


def _vocabularies() -> dict[str, Any]:
    from rae_edge.voice.vocabulary import extract
    from tests.voice import speech

    return {m: extract(name, [x for _, s, a in rows for x in (s, a)],
                       [c for c, _, _ in rows if c])
            for m, (name, rows) in speech.PLANT.items()}


def _wer_rows(name: str, items: list[tuple[str, str, Path]]) -> list[Row]:
    from rae_edge.voice.transcriber import Transcriber
    from tests.voice import speech

    t = Transcriber(name)
    vocab = _vocabularies()
    with_v = [0, 0]
    without = [0, 0]
    worst: list[tuple[int, str, str]] = []
    for machine, text, path in items:
        e, n = speech.word_errors(text, t.transcribe_with(path, vocab[machine]).text)
        with_v[0] += e
        with_v[1] += n
        plain = t.transcribe(path).text
        e2, _ = speech.word_errors(text, plain)
        without[0] += e2
        without[1] += n
        worst.append((e, text, plain))
    rate = with_v[0] / with_v[1]
    base = without[0] / without[1]
    return [row(f"{name} WER, {len(items)} espeak maintenance notes", 100 * rate, "%",
                target="<= 10%" if name == "tiny.en" else None,
                baseline="no vocabulary %", baseline_value=round(100 * base, 2),
                ok=(rate <= 0.10) if name == "tiny.en" else None,
                notes=f"{with_v[0]} word errors of {with_v[1]} with the machine's vocabulary "
                      f"(prompt, hotwords, plant spelling); {without[0]} without it")]


def _jfk_rows(name: str) -> list[Row]:
    from rae_edge.voice.transcriber import Transcriber
    from tests.voice import speech

    if not JFK.exists():
        return [row(f"{name} WER, jfk.flac", 0.0, "%", ok=None,
                    notes=f"skipped: {JFK} is absent")]
    text = Transcriber(name).transcribe(JFK).text
    rate = speech.wer(JFK_TEXT, text)
    return [row(f"{name} WER, jfk.flac", 100 * rate, "%", target="<= 5%",
                ok=rate <= 0.05, notes=repr(text))]


def _upload_to_search(tmp: Path) -> list[Row]:
    """A 15 s note through the real API on an idle node with auto-confirm, until search
    returns the correction it became."""
    from litestar.testing import TestClient

    from rae_edge import config
    from rae_edge.node import EdgeNode
    from rae_edge.tokens import create_token
    from rae_edge.voice.transcriber import Transcriber
    from rae_sync.domain import Role
    from rae_tablet_api.app import create_app
    from tests.voice import speech
    from tests.voice.conftest import TENANT, seed_plant

    # Sentences about press-1 until the note is about 15 s long.
    parts: list[Path] = []
    total = 0.0
    for i, s in enumerate(s for m, s in speech.SENTENCES if m == "press-1"):
        part = speech.speak(s, tmp / f"u{i}.wav")
        data, rate = speech.read_wav(part)
        parts.append(part)
        total += len(data) / rate + 0.6
        if total >= 13.0:
            break
    wav = speech.concat(parts, tmp / "note15.wav", pause_s=0.6)
    note = speech.encode(wav, tmp / "note15.ogg")
    warm = speech.encode(speech.speak("The belt was loose.", tmp / "w.wav"), tmp / "w.ogg")
    seconds = len(speech.read_wav(wav)[0]) / speech.read_wav(wav)[1]
    settings = config.load(None, data_dir=tmp / "node", node={"tenant_id": TENANT},
                           voice={"auto_confirm": True})
    node = EdgeNode(settings)
    seed_plant(node)
    headers = {"Authorization": "Bearer " + create_token(node.duck, TENANT, Role.TECHNICIAN,
                                                          "bench")}

    def until_searchable(c: TestClient[Any], path: Path, query: str) -> tuple[float, str]:
        t0 = time.perf_counter()
        r = c.post("/api/v1/voice-notes", headers=headers, data={"machine_id": "press-1"},
                   files={"audio": (path.name, path.read_bytes(), "audio/ogg")})
        assert r.status_code == 202, r.text
        nid = r.json()["id"]
        while True:
            n = c.get(f"/api/v1/voice-notes/{nid}", headers=headers).json()
            if n["status"] == "failed":
                raise RuntimeError(f"voice note failed: {n['reason']}")
            if n["correction_id"]:
                s = c.get("/api/v1/search", headers=headers,
                          params={"q": query, "machine_id": "press-1", "k": 20}).json()
                if n["correction_id"] in {h["id"] for h in s["hits"]}:
                    return time.perf_counter() - t0, n["correction"]["text"]
            if time.perf_counter() - t0 > 60:
                raise RuntimeError("the correction did not become searchable in 60 s")
            time.sleep(0.05)

    try:
        with TestClient(create_app(node)) as c:
            until_searchable(c, warm, "belt loose")  # loads Whisper and the embedder
            took, text = until_searchable(c, note, "sensor X loose")
    finally:
        node.close()
    alone, _, _ = _timed(lambda: Transcriber("tiny.en").transcribe(note), 1)
    return [row(f"upload -> searchable correction, {seconds:.0f} s note", took, "s",
                target="<= 5 s", baseline="transcription alone s",
                baseline_value=round(alone, 3), ok=took <= 5.0,
                notes=f"tiny.en, auto-confirm, ogg/opus over HTTP, load average {_load():.1f};"
                      f" correction: {text[:80]!r}")]


def _base_available() -> str | None:
    try:
        from rae_models import whisper_dir

        whisper_dir("base")
    except Exception as exc:
        return str(exc).splitlines()[0][:160]
    return None


def run(quick: bool = False) -> list[Row]:
    from tests.voice import speech

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        items = _espeak_set(tmp, 8 if quick else len(speech.SENTENCES))
        parts = [p for _, _, p in items]
        thirty = speech.concat(parts[:8] if len(parts) >= 8 else parts, tmp / "30s.wav",
                               pause_s=0.6)
        samples, rate = speech.read_wav(thirty)
        secs = len(samples) / rate
        if secs > 30.5:  # trim to 30 s: the figure asked for
            secs = 30.0
            thirty = speech.write_wav(tmp / "30s.wav", samples[: int(30 * rate)], rate)
        models = ["tiny.en"]
        missing = _base_available()
        if not quick and missing is None:
            models.append("base")
        repeat = 1 if quick else 3
        for name in models:
            if JFK.exists():
                rows += _speed_rows(name, JFK, 11.0, "jfk.flac 11 s", repeat)
            rows += _speed_rows(name, thirty, secs, f"{secs:.0f} s espeak note", repeat)
            rows += _jfk_rows(name)
            rows += _wer_rows(name, items)
        if missing is not None:
            rows.append(row("base: not measured", 0.0, "", ok=None,
                            notes=f"Whisper base is not installed: {missing}"))
        rows += _upload_to_search(tmp)
    return rows


if __name__ == "__main__":
    main_for(run)
