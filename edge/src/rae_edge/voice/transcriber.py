"""Speech to text with faster-whisper on the node's CPU (int8, VAD on), packaged models only.

The model folder comes from ``rae_models.whisper_dir`` (every file present, so
faster-whisper never tries the hub). One model per process, loaded on first use and
shared; CTranslate2 runs one transcription at a time on it here, so calls are serialised.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from rae_edge.voice.vocabulary import Vocabulary

# People say 2-3 words a second; a prompted transcript far below that lost words (a prompt
# can make tiny.en skip a sentence it believes was already said).
MIN_WORDS_PER_S = 1.0

_models: dict[str, WhisperModel] = {}
_models_lock = threading.Lock()


def load_model(name: str) -> WhisperModel:
    """The packaged Whisper model ``name`` ("tiny.en" or "base"), loaded once per process."""
    with _models_lock:
        model = _models.get(name)
        if model is None:
            from faster_whisper import WhisperModel

            from rae_models import whisper_dir

            model = WhisperModel(
                str(whisper_dir(name)), device="cpu", compute_type="int8",
                cpu_threads=os.cpu_count() or 1, local_files_only=True,
            )
            _models[name] = model
        return model


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration_s: float  # of the audio
    speech_s: float  # left after voice activity detection


class Transcriber:
    """Transcribes files with one Whisper model."""

    def __init__(self, model_name: str, beam_size: int = 5) -> None:
        self.model_name = model_name
        self.beam_size = beam_size
        self._lock = threading.Lock()

    @property
    def model(self) -> WhisperModel:
        return load_model(self.model_name)

    def transcribe(self, audio: Path | Any, prompt: str | None = None,
                   hotwords: str | None = None) -> Transcript:
        """The text of ``audio`` (a path, or 16 kHz mono float32 samples)."""
        model = self.model
        source = str(audio) if isinstance(audio, Path) else audio
        with self._lock:
            segments, info = model.transcribe(
                source, language="en", beam_size=self.beam_size, vad_filter=True,
                initial_prompt=prompt, hotwords=hotwords,
                # A short note gains nothing from conditioning on its own earlier text,
                # and that conditioning is what makes Whisper loop on noise.
                condition_on_previous_text=False,
            )
            text = " ".join(s.text.strip() for s in segments).strip()
        speech = info.duration_after_vad if info.duration_after_vad is not None else info.duration
        return Transcript(text=text, language=info.language, duration_s=float(info.duration),
                          speech_s=float(speech))

    def transcribe_with(self, audio: Path | Any, vocab: Vocabulary | None) -> Transcript:
        """Transcribes with the machine's vocabulary: its prompt and hotwords, a plain retry
        when the prompted text looks cut short, and the plant's spelling of its codes, part
        references and identifiers."""
        prompt = vocab.prompt if vocab is not None else None
        hotwords = vocab.hotwords if vocab is not None else None
        result = self.transcribe(audio, prompt=prompt, hotwords=hotwords)
        words = len(result.text.split())
        if prompt and result.speech_s > 3.0 and words < MIN_WORDS_PER_S * result.speech_s:
            plain = self.transcribe(audio)
            if len(plain.text.split()) > 1.5 * words:
                result = plain
        if vocab is not None:
            result = replace(result, text=vocab.fix_spelling(result.text))
        return result
