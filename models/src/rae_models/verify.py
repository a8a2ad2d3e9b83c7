"""Checks model files against the manifest: presence, size, sha256."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from rae_models.errors import ModelChecksumError, ModelFileMissingError
from rae_models.locate import model_files
from rae_models.manifest import load_manifest

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Problem:
    """One file that failed its check."""

    model: str
    file: str
    path: Path | None
    reason: str
    optional: bool = False

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path else ""
        return f"{self.model}/{self.file}{where}: {self.reason}"


def check_file(path: Path, sha256: str, size: int, *, full: bool = True) -> str | None:
    """None when the file matches; otherwise why not."""
    if not path.is_file():
        return "missing"
    actual_size = path.stat().st_size
    if actual_size != size:
        return f"size {actual_size} bytes, expected {size}"
    if full:
        actual = sha256_file(path)
        if actual != sha256:
            return f"sha256 {actual}, expected {sha256}"
    return None


def verify_model(name: str, root: Path | None = None, *, full: bool = True) -> list[Problem]:
    """Every problem with the files of model ``name`` (empty when all match)."""
    spec = load_manifest()[name]
    try:
        paths = model_files(name, root)
    except ModelFileMissingError as exc:
        return [Problem(name, "*", None, str(exc), spec.optional)]
    problems = []
    for fname, entry in spec.files.items():
        reason = check_file(paths[fname], entry.sha256, entry.size, full=full)
        if reason:
            problems.append(Problem(name, fname, paths[fname], reason, spec.optional))
    return problems


def verify_all(root: Path | None = None, *, full: bool = True) -> list[Problem]:
    """Problems across every model in the manifest (optional ones are marked so)."""
    return [p for name in load_manifest() for p in verify_model(name, root, full=full)]


def ensure_verified(name: str, root: Path | None = None, *, full: bool = True) -> dict[str, Path]:
    """The files of model ``name``; raises when any is missing or differs."""
    problems = verify_model(name, root, full=full)
    if problems:
        kind = (
            ModelFileMissingError
            if all("missing" in p.reason or p.file == "*" for p in problems)
            else ModelChecksumError
        )
        raise kind(
            "model files do not match the manifest: "
            + "; ".join(str(p) for p in problems)
            + " (models are never downloaded at run time: reinstall the package)"
        )
    return model_files(name, root)
