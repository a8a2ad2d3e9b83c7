"""rae_models against the real packaged files: location, sha256 verification, the
``rae-models verify`` command, the embedder and the Whisper folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rae_models import (
    ModelChecksumError,
    ModelFileMissingError,
    OnnxEmbedder,
    verify_all,
    whisper_dir,
)
from rae_models.locate import model_files


@pytest.fixture(scope="module")
def embedder() -> OnnxEmbedder:
    return OnnxEmbedder()


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    """A copy of the embedder and tiny.en files laid out as ``<root>/<model>/<file>``."""
    root = tmp_path / "models"
    for name in ("all-MiniLM-L6-v2", "whisper-tiny.en"):
        (root / name).mkdir(parents=True)
        for fname, src in model_files(name).items():
            shutil.copyfile(src, root / name / fname)
    return root


def _verify_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rae_models.cli", "verify", *args],
        capture_output=True, text=True, timeout=120,
    )


def test_installed_models_match_the_manifest() -> None:
    required = [p for p in verify_all() if not p.optional]
    assert required == []
    assert _verify_cli().returncode == 0


def test_verify_detects_a_tampered_file(model_root: Path) -> None:
    assert _verify_cli("--root", str(model_root)).returncode == 0
    onnx = model_root / "all-MiniLM-L6-v2" / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped: only sha256 can see it
    onnx.write_bytes(bytes(data))
    res = _verify_cli("--root", str(model_root))
    assert res.returncode == 1
    assert "FAILED   all-MiniLM-L6-v2" in res.stdout
    assert "model.onnx" in res.stdout and "sha256" in res.stdout
    assert "ok       whisper-tiny.en" in res.stdout
    with pytest.raises(ModelChecksumError, match=r"model\.onnx"):
        OnnxEmbedder(root=model_root)


def test_missing_file_is_a_clear_error_never_a_download(model_root: Path) -> None:
    (model_root / "whisper-tiny.en" / "tokenizer.json").unlink()
    res = _verify_cli("--root", str(model_root))
    assert res.returncode == 1
    assert "tokenizer.json" in res.stdout and "missing" in res.stdout
    with pytest.raises(ModelFileMissingError, match=r"tokenizer\.json"):
        whisper_dir("tiny.en", root=model_root)
    with pytest.raises(ModelFileMissingError, match="unknown Whisper model"):
        whisper_dir("large-v3")


def test_whisper_tiny_folder_is_ready_for_faster_whisper() -> None:
    folder = whisper_dir("tiny.en", verify=True)
    for fname in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        assert (folder / fname).is_file()


def test_embedder_vectors(embedder: OnnxEmbedder) -> None:
    texts = [
        "L/H bucket cylinder leaking hydraulic oil",
        "left hand bucket cylinder is leaking oil",
        "replaced the proximity sensor on the conveyor",
    ]
    v = embedder.embed(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sims = v @ v.T
    assert sims[0, 1] > sims[0, 2] + 0.3  # the paraphrase is far closer than the other topic
    # Batching by length and padding to the batch's longest must not change the vectors.
    one_by_one = np.vstack([embedder.embed([t]) for t in texts])
    assert np.allclose(v, one_by_one, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)
    assert embedder.tag.startswith("all-MiniLM-L6-v2-onnx-int8@1.0.0+8199be6f")


def test_truncation_at_max_tokens_and_token_count(embedder: OnnxEmbedder) -> None:
    words = "pressure " * 400
    assert embedder.count_tokens(words) == 400  # counting does not truncate
    assert embedder.count_tokens("R&R FUEL SERVO") > 3
    long_a = embedder.embed([words + "alpha"])
    long_b = embedder.embed([words + "completely different ending"])
    assert np.allclose(long_a, long_b, atol=1e-6)  # beyond 256 tokens text is cut
