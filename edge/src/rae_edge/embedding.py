"""The edge's embedding service: one loaded model per process, batched.

The model is loaded once per process per (truncation, threads) and shared by every
:class:`EmbeddingService`, so the API, the ingest job and the workers share one ~90 MiB model.
Vectors carry :attr:`EmbeddingService.model_id` (model name + version) in the store: when
the model changes, ``rae-edge reindex`` re-embeds the rows that carry another id.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from rae_edge.config import EmbeddingSettings
from rae_edge.metrics import EMBED_SECONDS, EMBED_TEXTS
from rae_models import DIM, OnnxEmbedder

_models: dict[tuple[int, int], OnnxEmbedder] = {}
_models_lock = threading.Lock()


def _model(settings: EmbeddingSettings) -> OnnxEmbedder:
    key = (settings.max_tokens, settings.threads)
    with _models_lock:
        if key not in _models:
            _models[key] = OnnxEmbedder(max_tokens=settings.max_tokens, threads=settings.threads)
        return _models[key]


class EmbeddingService:
    """Embeds texts with the packaged all-MiniLM-L6-v2 (384-d, L2-normalised float32).

    Cheap to construct: the model itself is loaded once per process and shared.
    """

    dim = DIM

    def __init__(self, settings: EmbeddingSettings | None = None) -> None:
        settings = settings or EmbeddingSettings()
        self.batch_size = settings.batch_size
        self._model = _model(settings)

    @property
    def model_id(self) -> str:
        """``name@version`` stored beside every vector (e.g.
        ``all-MiniLM-L6-v2-onnx-int8@1.0.0+8199be6f699a``)."""
        return self._model.tag

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """``(len(texts), 384)`` float32, one row per text, in order."""
        with EMBED_SECONDS.time():
            out = self._model.embed(texts, batch_size=self.batch_size)
        EMBED_TEXTS.inc(len(texts))
        return out

    def embed_one(self, text: str) -> npt.NDArray[np.float32]:
        """One text's vector, ``(384,)``."""
        with EMBED_SECONDS.time():
            out = self._model.embed([text], batch_size=1)
        EMBED_TEXTS.inc()
        return np.asarray(out[0], dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        """The model tokenizer's word-piece count (for token budgets such as the context
        pack); an approximation of any LLM's own count, usually within 10-20 %."""
        return self._model.count_tokens(text)


def get_embedder(settings: EmbeddingSettings | None = None) -> EmbeddingService:
    """The embedding service for these settings, on the process-wide model."""
    return EmbeddingService(settings)
