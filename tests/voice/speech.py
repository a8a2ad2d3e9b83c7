"""Speech made on the spot for voice-note tests and the voice benchmark.

- :func:`speak`: espeak-ng says a sentence into a WAV file (16-bit mono 22.05 kHz);
- :func:`encode`: re-encodes audio with ``av`` into what tablets send (webm/opus, ogg/opus,
  m4a/aac, mp3, flac, wav);
- :func:`silence`, :func:`concat`: WAVs of digital silence, and sentences joined with pauses;
- :func:`wer`: word error rate after a light normalisation (case, punctuation, "F-12"="F12");
- ``PLANT`` and ``SENTENCES``: a small plant's memory and maintenance sentences that use
  its error codes and part names (the sentences are spoken, never committed as audio).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import wave
from pathlib import Path

import av
import numpy as np

ESPEAK = shutil.which("espeak-ng")

# machine id -> (name, incidents as (error code, symptom, action)): the memory the voice
# prompt is built from. The sentences below use these words; the memory states them in
# other sentences, as a plant's logs would.
PLANT: dict[str, tuple[str, list[tuple[str | None, str, str]]]] = {
    "press-1": ("Hydraulic press 1", [
        ("E404", "Press stopped: light curtain receiver not responding",
         "Cleaned both lenses and restarted"),
        ("E404", "E404 three times in one hour; ram blocked",
         "Replaced sensor X (light curtain receiver LC-2) and taught the curtain in again"),
        ("E404", "Press stopped again with E404", "Checked connector X4 and re-seated the cable"),
        ("E117", "Hydraulic oil temperature above 60 C",
         "Cleaned the oil cooler fins and checked the cooler fan"),
        (None, "Safety door switch S3 does not close", "Adjusted the door switch bracket"),
        (None, "Hydraulic pump noisy", "Bled air from the suction line of the pump"),
    ]),
    "conveyor-3": ("Packaging conveyor 3", [
        ("F-12", "Conveyor drive tripped on overload",
         "Removed jammed carton from the transfer and reset Q1"),
        ("F-12", "F-12 after belt change", "Re-tensioned the belt and reset motor protection Q1"),
        (None, "Photo eye B7 misses cartons", "Cleaned the reflector of photo eye B7"),
    ]),
    "robot-4": ("Welding robot 4", [
        ("E117", "Welding torch cooling temperature high", "Replaced the coolant pump fuse F3"),
        (None, "Wire feeder slipping", "Replaced the drive rolls of the wire feeder"),
        (None, "Torch collision sensor tripped", "Re-taught the tool center point"),
    ]),
}

SENTENCES: list[tuple[str, str]] = [
    ("press-1", "Error E404 again, sensor X was actually loose, not broken."),
    ("press-1", "I tightened sensor X and the press runs without E404."),
    ("press-1", "Connector X4 had a bent pin, so I replaced the connector."),
    ("press-1", "Cleaning the lenses did not clear E404, the receiver was faulty."),
    ("press-1", "Alarm E117 came back, the oil cooler fins were full of dust."),
    ("press-1", "The cooler fan was not turning, I replaced the fan motor."),
    ("press-1", "The safety door switch S3 was misaligned, I adjusted the bracket."),
    ("press-1", "The hydraulic pump is noisy again, there is air in the suction line."),
    ("press-1", "Please check the light curtain before you restart the press."),
    ("press-1", "The ram was blocked by a broken part, I removed it and tested the stroke."),
    ("conveyor-3", "Fault F12 was a jammed carton in the transfer, not the drive."),
    ("conveyor-3", "I reset Q1 and the conveyor started without a fault."),
    ("conveyor-3", "The belt was loose, I tensioned the belt and checked the rollers."),
    ("conveyor-3", "Photo eye B7 was dirty, cleaning the reflector fixed it."),
    ("conveyor-3", "Do not bypass the motor protection, find the cause of the overload."),
    ("robot-4", "The coolant pump fuse F3 blew again, the pump is drawing too much current."),
    ("robot-4", "Alarm E117 on the welding robot, the torch cooling was blocked."),
    ("robot-4", "I replaced the drive rolls of the wire feeder, the wire no longer slips."),
    ("robot-4", "The collision sensor tripped after the tool change, I taught the tool point."),
    ("robot-4", "The welding torch liner was worn, I fitted a new liner."),
    ("robot-4", "The coolant level was low, I topped up the coolant and bled the pump."),
    ("press-1", "The oil temperature was normal after I cleaned the cooler."),
]


def speak(text: str, out: Path, *, voice: str = "en-us", wpm: int = 150, gap: int = 3) -> Path:
    """espeak-ng speaks ``text`` into the WAV file ``out``; ``gap`` adds 10 ms units of
    pause between words (a technician speaking a note clearly; espeak's run-on default
    is harder to follow for people and for Whisper alike)."""
    if ESPEAK is None:
        raise RuntimeError("espeak-ng is not installed (Debian package espeak-ng)")
    subprocess.run([ESPEAK, "-v", voice, "-s", str(wpm), "-g", str(gap), "-w", str(out), text],
                   check=True, capture_output=True)
    return out


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        if w.getnchannels() > 1:
            data = data.reshape(-1, w.getnchannels())[:, 0]
    return data, rate


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype=np.int16).tobytes())
    return path


def silence(path: Path, seconds: float, rate: int = 16_000) -> Path:
    return write_wav(path, np.zeros(int(seconds * rate), dtype=np.int16), rate)


def concat(paths: list[Path], out: Path, pause_s: float = 0.6) -> Path:
    """Joins WAVs of one rate with ``pause_s`` of silence between them."""
    parts: list[np.ndarray] = []
    rate = 0
    for p in paths:
        data, rate = read_wav(p)
        parts.extend([data, np.zeros(int(pause_s * rate), dtype=np.int16)])
    return write_wav(out, np.concatenate(parts), rate)


_CODECS = {  # suffix -> (container, codec, sample rate)
    ".webm": ("webm", "libopus", 48_000),
    ".ogg": ("ogg", "libopus", 48_000),
    ".m4a": ("mp4", "aac", 44_100),
    ".mp3": ("mp3", "libmp3lame", 44_100),
    ".flac": ("flac", "flac", 22_050),
    ".wav": ("wav", "pcm_s16le", 22_050),
}


def encode(src: Path, dst: Path) -> Path:
    """Re-encodes ``src`` into the format named by ``dst``'s suffix (see ``_CODECS``)."""
    container, codec, rate = _CODECS[dst.suffix]
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"  # type: ignore[union-attr]
        fmt = stream.codec_context.codec.audio_formats[0].name  # type: ignore[union-attr]
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate)
        for frame in inp.decode(audio=0):
            for f in resampler.resample(frame):
                out.mux(stream.encode(f))  # type: ignore[arg-type]
        for f in resampler.resample(None):
            out.mux(stream.encode(f))  # type: ignore[arg-type]
        out.mux(stream.encode(None))  # type: ignore[arg-type]
    return dst


_PUNCT = re.compile(r"[^\w\s]")
_CODE_DASH = re.compile(r"\b([a-z])-(\d)")


def normalise(text: str) -> list[str]:
    t = _CODE_DASH.sub(r"\1\2", text.lower())
    return _PUNCT.sub(" ", t).split()


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(edits, reference words) of the word-level edit distance."""
    r, h = normalise(ref), normalise(hyp)
    prev = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        cur = [i] + [0] * len(h)
        for j, hw in enumerate(h, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rw != hw))
        prev = cur
    return prev[-1], len(r)


def wer(ref: str, hyp: str) -> float:
    edits, n = word_errors(ref, hyp)
    return edits / max(n, 1)
