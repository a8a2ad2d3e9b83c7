"""From bundle to a healthy node with the network cut; an update to a second build; a broken
update (its migration runs, its node is unhealthy) that rolls back without losing data; and a
bundle older than the data, refused."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
import warnings
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from rae_edge.store.migrations import SCHEMA_VERSION
from rae_image import bundle, installer
from tests.image.conftest import UNVERIFIED, base_python, offline_prefix

pytestmark = pytest.mark.slow


def install(b: Path, root: Path, *extra: str, offline: bool = True) -> subprocess.CompletedProcess[
        str]:
    cmd = [*(offline_prefix() if offline else []), base_python(), str(b / "install.py"),
           "--root", str(root), "--health-timeout", "90", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def _patch_wheel(whl: Path, member: str, edit: Any) -> None:
    """Rewrites one file inside a wheel (and its RECORD line): a release built from
    different source, as a broken build would be."""
    with zipfile.ZipFile(whl) as z:
        items = [(i, z.read(i.filename)) for i in z.infolist()]
    new = []
    for info, data in items:
        if info.filename == member:
            data = edit(data.decode()).encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            rec = f"{member},sha256={digest.decode()},{len(data)}"
        new.append((info, data))
    out = []
    for info, data in new:
        if info.filename.endswith(".dist-info/RECORD"):
            lines = [rec if ln.startswith(member + ",") else ln
                     for ln in data.decode().splitlines()]
            data = ("\n".join(lines) + "\n").encode()
        out.append((info, data))
    whl.unlink()  # new inode: the hard-linked original stays intact
    with zipfile.ZipFile(whl, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in out:
            z.writestr(info, data)


def broken_bundle(good: Path, dest: Path) -> Path:
    """Release 1.2.0: adds a migration, and its health endpoint never says ok."""
    root = dest / good.name.replace("1.1.0", "1.2.0")
    shutil.copytree(good, root, copy_function=os.link)
    _patch_wheel(next((root / "wheels").glob("rae_edge-*.whl")),
                 "rae_edge/store/migrations.py",
                 lambda s: s + "\nMIGRATIONS.append((SCHEMA_VERSION + 1, "
                               "'CREATE TABLE broken_probe (x INT)'))\n"
                               "SCHEMA_VERSION = MIGRATIONS[-1][0]\n")
    _patch_wheel(next((root / "wheels").glob("rae_tablet_api-*.whl")),
                 "rae_tablet_api/routes/health.py",
                 lambda s: s.replace('"status": "ok"', '"status": "broken"'))
    m = json.loads((root / "manifest.json").read_text())
    m.update(version="1.2.0", schema_version=SCHEMA_VERSION + 1)
    bundle.write_manifest(root, {k: v for k, v in m.items() if k != "files"})
    return root


def _get(url: str, token: str | None = None) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token
                                 else {})
    with urllib.request.urlopen(req, timeout=30, context=UNVERIFIED) as r:
        return json.loads(r.read())


def _post(url: str, body: Any, token: str) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60, context=UNVERIFIED) as r:
        return json.loads(r.read())


def _duck(data: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(data / "node.duckdb"))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


_FALLBACK_INGEST = """
import csv, sys
from datetime import datetime, UTC
from rae_edge import config
from rae_edge.node import EdgeNode
from rae_sync.domain import Incident
node = EdgeNode(config.load(sys.argv[1]))
rows = list(csv.DictReader(open(sys.argv[2], encoding="utf-8")))
incs = [Incident(tenant_id=node.tenant_id, machine_id=r["machine_id"],
                 error_code=r["error_code"], occurred_at=datetime.fromisoformat(r["occurred_at"]),
                 symptom=r["symptom"],
                 action=r["action"], source=sys.argv[2]) for r in rows]
print(len(node.duck.insert_incidents(incs)))
node.close()
"""


def ingest_file(opt: Path, cfg: Path, tmp_path: Path) -> int:
    """Feeds the installed release an error-log file while no node runs: with ``rae-edge
    ingest`` where this release has it (INTERFACE.md), else with its own store API."""
    exe = opt / "current" / "venv" / "bin" / "rae-edge"
    log = tmp_path / "errors.csv"
    log.write_text("machine_id,occurred_at,error_code,symptom,action\n" + "".join(
        f"PRESS-{i % 3},2026-03-0{1 + i % 9}T08:{i:02d}:00+00:00,E{400 + i},"
        f"hydraulic pressure drop on ram {i},replaced seal kit {i}\n" for i in range(40)))
    helptext = subprocess.run([exe, "--help"], capture_output=True, text=True).stdout
    if "ingest" in helptext:
        r = subprocess.run([exe, "ingest", str(log), "--kind", "errors", "--no-progress",
                            "--config", str(cfg)], capture_output=True, text=True, timeout=600)
    else:
        r = subprocess.run([opt / "current/venv/bin/python", "-c", _FALLBACK_INGEST, str(cfg),
                            str(log)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    info = subprocess.run([exe, "info", "--config", str(cfg)], capture_output=True, text=True,
                          check=True).stdout
    n = int(json.loads(info)["incidents"])
    assert n == 40, info
    return n


def _use_node(opt: Path, cfg: Path, run_node: Any, tmp_path: Path, token: str) -> dict[str, Any]:
    """Starts the installed release, feeds it and asks it something through the routes that
    exist in this release (the ones INTERFACE.md names), returns what it answered."""
    node = run_node(opt / "current" / "venv" / "bin" / "rae-edge", cfg, tmp_path / "node.log")
    try:
        health = _get(node.url + "/api/v1/health")
        assert health["status"] == "ok"
        paths = _get(node.url + "/api/v1/schema/openapi.json")["paths"]
        out: dict[str, Any] = {"health": health, "paths": sorted(paths)}
        if "/api/v1/machines" in paths and "/api/v1/incidents" in paths:
            _post(node.url + "/api/v1/machines", [{"id": "PRESS-7", "name": "Press 7",
                                                   "qr_code": "QR-PRESS-7", "site": "plant-1"}],
                  token)
            _post(node.url + "/api/v1/incidents", [{
                "machine_id": "PRESS-7", "occurred_at": "2026-03-01T08:00:00Z",
                "error_code": "E404", "symptom": "hydraulic pressure drops under load",
                "action": "replaced the pressure sensor"}], token)
        if "/api/v1/documents" in paths:
            out["document"] = _upload(node.url, tmp_path / "errors.csv", token)
        if "/api/v1/machines/{code}/briefing" in paths:
            out["briefing"] = _get(node.url + "/api/v1/machines/QR-PRESS-7/briefing", token)
            assert "E404" in json.dumps(out["briefing"])
        else:
            warnings.warn("this release has no briefing route yet: only health was asked",
                          stacklevel=1)
        return out
    finally:
        node.stop()


def _upload(base: str, path: Path, token: str) -> Any:
    boundary = "raeboundary7"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nerrors"
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: text/csv\r\n\r\n").encode() \
        + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(base + "/api/v1/documents", data=body, method="POST", headers={
        "Authorization": f"Bearer {token}",
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=60, context=UNVERIFIED) as r:
        job = json.loads(r.read())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        got = _get(f"{base}/api/v1/jobs/{job['id']}", token)
        if got.get("status") in ("done", "failed", "succeeded", "error"):
            assert got["status"] in ("done", "succeeded"), got
            return got
        time.sleep(1)
    raise AssertionError("document ingest did not finish")


def test_offline_install_update_broken_update_and_too_old(bundles: dict[str, Path],
                                                         tmp_path: Path, run_node: Any) -> None:
    root = tmp_path / "root"
    opt, cfg = root / "opt/rae-edge", root / "etc/rae-edge/edge.yaml"
    data = root / "var/lib/rae-edge"
    # 1. Fresh install with the network cut.
    t0 = time.monotonic()
    r = install(bundles["1.0.0"], root)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    assert "model files verified by sha256" in r.stdout and "is live" in r.stdout
    assert os.readlink(opt / "current") == "versions/1.0.0"
    assert took < 300, f"install took {took:.0f} s"
    state = json.loads((opt / "state.json").read_text())
    assert state["current"] == "1.0.0"
    unit = (opt / "systemd" / "rae-edge.service").read_text()
    assert f"ExecStart={opt}/current/venv/bin/python {opt}/current/supervise.py --config {cfg}" \
        in unit
    exe = opt / "current" / "venv" / "bin" / "rae-edge"
    # The installed release is self-contained: its own rae_edge, not this checkout's.
    where = subprocess.run([opt / "current/venv/bin/python", "-c",
                            "import rae_edge; print(rae_edge.__file__)"],
                           capture_output=True, text=True, check=True).stdout
    assert (opt / "versions/1.0.0/venv") in Path(where.strip()).resolve().parents
    token = subprocess.run([exe, "token", "create", "--role", "admin", "--config", str(cfg)],
                           capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    n_incidents = ingest_file(opt, cfg, tmp_path)
    first = _use_node(opt, cfg, run_node, tmp_path, token)
    assert first["health"]["schema_version"] == SCHEMA_VERSION
    before = {t: _duck(data, f"SELECT * FROM {t} ORDER BY ALL")
              for t in ("machines", "incidents", "tokens", "documents")}

    # 2. Update to a second build: new venv, link switched, old one kept as previous.
    r = install(bundles["1.1.0"], root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.readlink(opt / "current") == "versions/1.1.0"
    assert os.readlink(opt / "previous") == "versions/1.0.0"
    after = {t: _duck(data, f"SELECT * FROM {t} ORDER BY ALL") for t in before}
    assert after == before and len(after["incidents"]) >= n_incidents

    # 3. A broken release: its migration runs, its node never reports ok -> rolled back,
    #    and the data is the pre-migration data, byte for byte the same records.
    broken = broken_bundle(bundles["1.1.0"], tmp_path)
    r = install(broken, root, "--health-timeout", "20")
    assert r.returncode == installer.EXIT_ROLLED_BACK, r.stdout + r.stderr
    assert "rolling back" in r.stdout and "pre-migration data put back" in r.stdout
    assert os.readlink(opt / "current") == "versions/1.1.0"
    assert _duck(data, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)]
    assert not _duck(data, "SELECT 1 FROM duckdb_tables() WHERE table_name = 'broken_probe'")
    assert {t: _duck(data, f"SELECT * FROM {t} ORDER BY ALL") for t in before} == before
    migrated = data.with_name(f".{data.name}.failed-1.2.0")
    assert _duck(migrated, "SELECT count(*) FROM broken_probe") == [(0,)]
    again = _use_node(opt, cfg, run_node, tmp_path, token)  # the old release still serves
    assert again["health"]["status"] == "ok"
    assert json.loads((opt / "state.json").read_text())["history"][-1]["event"] == "rolled back"

    # 4. Data written by a newer release: an older bundle is refused, nothing changes.
    _duck(data, f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    r = install(bundles["1.0.0"], root)
    assert r.returncode == installer.EXIT_SCHEMA, r.stdout + r.stderr
    assert f"schema version {SCHEMA_VERSION + 1}, newer than release 1.0.0" in r.stderr
    assert os.readlink(opt / "current") == "versions/1.1.0"
    _duck(data, f"UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version'")

    # 5. The disk dies: a backup taken with the installed release comes back on a new
    #    machine in the same install step, every record the same.
    r = subprocess.run([exe, "backup", "--config", str(cfg), str(tmp_path / "bk")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    root2 = tmp_path / "root2"
    r = install(bundles["1.1.0"], root2, "--restore", str(tmp_path / "bk"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "restored" in r.stdout and "is live" in r.stdout
    data2 = root2 / "var/lib/rae-edge"
    assert {t: _duck(data2, f"SELECT * FROM {t} ORDER BY ALL") for t in before} == \
        {t: _duck(data, f"SELECT * FROM {t} ORDER BY ALL") for t in before}
    r = install(bundles["1.1.0"], root2, "--restore", str(tmp_path / "bk"))
    assert r.returncode == installer.EXIT_BAD and "empty data folder" in r.stderr
    print(f"offline install from bundle to healthy node: {took:.1f} s at "
          f"{datetime.now(UTC):%H:%M}")
