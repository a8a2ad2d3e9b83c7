"""Checks that an uploaded file is audio a tablet records, before it is accepted.

The whole file is decoded once with ``av`` (FFmpeg), resampled to 16 kHz mono as Whisper
hears it, so a corrupt file, a file without sound, an empty or silent recording and one
over the length limit are all refused with a reason that names the problem, and nothing
is stored for them. Decoding stops as soon as the limit is passed, so a small file that
claims hours of audio costs no more than the limit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from rae_edge.errors import InvalidInputError

SAMPLE_RATE = 16_000
# Below this peak level (about -54 dBFS) a recording holds no audible sound at all.
SILENCE_PEAK = 0.002
# Containers add a few per cent of framing; below this share of audio packets a file is
# damaged (or padded with something else).
MIN_PACKET_SHARE = 0.8

# FFmpeg demuxer names (a container lists several, e.g. "matroska,webm") -> stored extension.
_FORMATS: tuple[tuple[str, str], ...] = (
    ("webm", "webm"),
    ("matroska", "webm"),
    ("ogg", "ogg"),
    ("mp4", "m4a"),
    ("m4a", "m4a"),
    ("mov", "m4a"),
    ("aac", "aac"),
    ("wav", "wav"),
    ("flac", "flac"),
    ("mp3", "mp3"),
)
ACCEPTED = "webm/opus, ogg (opus or vorbis), m4a/aac, wav, flac, mp3"


class AudioRejectedError(InvalidInputError):
    """An upload that is not usable audio; ``code`` says which way (HTTP 422)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AudioInfo:
    """What decoding found: container, codec, length, and loudness (16 kHz mono)."""

    ext: str
    container: str
    codec: str
    duration_s: float
    peak: float
    rms: float


def _ext_for(container: str) -> str | None:
    names = container.split(",")
    for name, ext in _FORMATS:
        if name in names:
            return ext
    return None


def _why(exc: Exception) -> str:
    # FFmpeg's message without the file name (a temporary path means nothing to the caller).
    return str(getattr(exc, "strerror", None) or type(exc).__name__)


def _with_flush(frames: Iterator[av.AudioFrame]) -> Iterator[av.AudioFrame | None]:
    # A final None drains the samples the resampler still holds.
    yield from frames
    yield None


def probe(path: Path, max_seconds: float) -> AudioInfo:
    """Decodes ``path`` fully (up to ``max_seconds``) and returns what it holds.

    Raises :class:`AudioRejectedError` with code ``audio_empty``, ``not_audio``,
    ``audio_unsupported``, ``audio_corrupt``, ``audio_too_long`` or ``no_speech`` (silent).
    """
    if path.stat().st_size == 0:
        raise AudioRejectedError("audio_empty", "the audio file is empty (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise AudioRejectedError(
            "not_audio", f"the upload is not a recording in a known audio format "
                         f"({_why(exc)})"
        ) from exc
    with container:
        fmt = container.format.name
        ext = _ext_for(fmt)
        if not container.streams.audio:
            raise AudioRejectedError("not_audio", f"the upload ({fmt}) holds no audio stream")
        if ext is None:
            raise AudioRejectedError(
                "audio_unsupported", f"audio container {fmt!r} is not accepted: send {ACCEPTED}"
            )
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        limit = int(max_seconds * SAMPLE_RATE)
        samples = 0
        peak = 0.0
        sumsq = 0.0
        packet_bytes = 0

        def frames() -> Iterator[av.AudioFrame]:
            nonlocal packet_bytes
            for packet in container.demux(stream):
                packet_bytes += packet.size
                yield from packet.decode()

        try:
            for frame in _with_flush(frames()):
                for out in resampler.resample(frame):
                    pcm = out.to_ndarray().reshape(-1)
                    samples += pcm.size
                    if samples > limit:
                        raise AudioRejectedError(
                            "audio_too_long",
                            f"the recording is longer than the {max_seconds:g} s limit",
                        )
                    if pcm.size:
                        peak = max(peak, float(np.max(np.abs(pcm))))
                        sumsq += float(np.dot(pcm.astype(np.float64), pcm.astype(np.float64)))
        except av.FFmpegError as exc:
            raise AudioRejectedError(
                "audio_corrupt", f"the {fmt} audio is damaged and cannot be decoded ({_why(exc)})"
            ) from exc
        # The length the container declares (FLAC, WAV, most files; not a browser's live
        # webm; an mp3's is only a guess from its bit rate), against what was decoded.
        declared = container.duration / 1e6 if container.duration and ext != "mp3" else None
    if samples == 0:
        raise AudioRejectedError("audio_empty", "the recording holds no audio samples")
    decoded = samples / SAMPLE_RATE
    if declared is not None and declared < 24 * 3600 and decoded < MIN_PACKET_SHARE * declared:
        raise AudioRejectedError(
            "audio_corrupt", f"the {fmt} audio is damaged: only {decoded:.1f} s of its "
                             f"{declared:.1f} s could be decoded")
    size = path.stat().st_size
    # FFmpeg skips damaged stretches without an error; a file whose bytes are mostly not
    # audio packets was damaged (mp3 is exempt: ID3 tags may carry large pictures).
    if ext != "mp3" and size > 4096 and packet_bytes < MIN_PACKET_SHARE * size:
        raise AudioRejectedError(
            "audio_corrupt", f"the {fmt} audio is damaged: only {100 * packet_bytes // size}% "
                             "of the file could be read as audio")
    duration = decoded
    rms = math.sqrt(sumsq / samples)
    if peak < SILENCE_PEAK:
        raise AudioRejectedError("no_speech", f"no speech: the {duration:.1f} s recording "
                                              "is silent")
    return AudioInfo(ext=ext, container=fmt, codec=codec, duration_s=round(duration, 3),
                     peak=peak, rms=rms)
