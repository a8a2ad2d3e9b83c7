"""rae_models: the packaged local models, located, verified (sha256) and loaded offline.

Modules:
- ``manifest``: the committed ``manifest.json`` (every model file's package, size, sha256);
- ``locate``: where each file lies (installed packages, or ``$RAE_MODELS_DIR``);
- ``verify``: presence/size/sha256 checks against the manifest;
- ``embedder``: :class:`OnnxEmbedder`, all-MiniLM-L6-v2 int8 ONNX (tokenizers + onnxruntime);
- ``whisper``: :func:`whisper_dir`, a folder ready for faster-whisper (tiny.en, base);
- ``errors``: :class:`ModelFileMissingError`, :class:`ModelChecksumError`;
- ``cli``: ``rae-models verify`` / ``rae-models paths``.

No hub is ever contacted: a missing file is an error that names it. This package imports
nothing else of the project.
"""

import os

# Belt and braces: libraries that know about the Hugging Face hub must stay offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rae_models.embedder import DIM, EMBEDDER, OnnxEmbedder, embedder_files
from rae_models.errors import ModelChecksumError, ModelError, ModelFileMissingError
from rae_models.verify import Problem, verify_all, verify_model
from rae_models.whisper import WHISPER_MODELS, whisper_dir

__all__ = [
    "DIM",
    "EMBEDDER",
    "WHISPER_MODELS",
    "ModelChecksumError",
    "ModelError",
    "ModelFileMissingError",
    "OnnxEmbedder",
    "Problem",
    "embedder_files",
    "verify_all",
    "verify_model",
    "whisper_dir",
]
