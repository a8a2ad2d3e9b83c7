"""Backup of a live node under writes, restore elsewhere, and every record compared.

Real DuckDB and LanceDB files; the writer thread goes through the same ``EdgeNode`` the
backup reads, as the tablet API's handlers do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import lancedb
import numpy as np
import pytest

from rae_edge import backup as bk
from rae_edge import config
from rae_edge.cli import main as edge_main
from rae_edge.errors import ConflictError, SchemaTooNewError
from rae_edge.node import EdgeNode
from rae_edge.store.migrations import SCHEMA_VERSION
from rae_sync.domain import Correction, Incident, Machine

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
RAE_EDGE = str(Path(sys.executable).with_name("rae-edge"))


def _incident(i: int) -> Incident:
    return Incident(tenant_id="acme", machine_id=f"M{i % 4}", occurred_at=T0 + timedelta(
        minutes=i), error_code=f"E{400 + i % 7}", symptom=f"hydraulic pressure drop #{i}",
        action=f"replaced seal kit {i}")


def _memory_rows(incidents: list[Incident], seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(len(incidents), 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [dict(id=inc.id, tenant_id=inc.tenant_id, kind="incident", machine_id=inc.machine_id,
                 text=inc.symptom, search_text=inc.symptom, vector=v.tolist(),
                 occurred_at=inc.occurred_at, error_codes=[inc.error_code], source="test")
            for inc, v in zip(incidents, vecs, strict=True)]


def _seed(node: EdgeNode, n: int) -> list[Incident]:
    node.duck.upsert_machines([Machine(tenant_id="acme", id=f"M{i}", name=f"Press {i}",
                                       qr_code=f"QR-{i}", site="plant-1") for i in range(4)])
    incs = [_incident(i) for i in range(n)]
    node.duck.insert_incidents(incs, outbox=True)
    node.lance.add(_memory_rows(incs, seed=1))
    node.lance.refresh_indexes()
    node.duck.insert_correction(Correction(
        tenant_id="acme", machine_id="M1", text="the seal was fine; the sensor was loose",
        author="tech-7", target_id=incs[1].id, valid_from=T0 + timedelta(days=1)))
    audio = node.data_dir / "audio" / "ab"
    audio.mkdir(parents=True)
    (audio / ("ab" + "0" * 62)).write_bytes(os.urandom(4096))
    keys = node.data_dir / "keys"
    keys.mkdir(mode=0o700)
    (keys / "node.key").write_bytes(b"-----PRIVATE-----\n")
    (keys / "node.key").chmod(0o600)
    return incs


def _duck_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() ORDER BY table_name").fetchall()]
        return {t: sorted(con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
                for t in tables}
    finally:
        con.close()


def _lance_rows(root: Path, version: int | None = None) -> list[dict[str, Any]]:
    t = lancedb.connect(str(root)).open_table("memories")
    if version is not None:
        t.checkout(version)
    return sorted(t.to_arrow().to_pylist(), key=lambda r: r["id"])


def test_live_backup_under_writes_restores_every_record(node: EdgeNode, tmp_path: Path) -> None:
    seeded = _seed(node, 60)
    written: list[str] = [i.id for i in seeded]
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        i = 1000
        try:
            while not stop.is_set():
                batch = [_incident(i), _incident(i + 1)]
                node.duck.insert_incidents(batch, outbox=True)
                written.extend(x.id for x in batch)
                node.lance.add(_memory_rows(batch, seed=i))
                i += 2
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    th = threading.Thread(target=writer)
    th.start()
    try:
        while len(written) < 120:  # the writer is well under way before the snapshot
            stop.wait(0.01)
        manifest = bk.backup_node(node, tmp_path / "bk")
        n_at_backup = len(written)
        while len(written) < n_at_backup + 20:  # and keeps going after it
            stop.wait(0.01)
    finally:
        stop.set()
        th.join()
    assert not errors, errors
    restored = tmp_path / "restored"
    out = bk.restore(tmp_path / "bk", restored)
    assert out["schema_version"] == SCHEMA_VERSION

    # DuckDB: every restored row equals the source's row, and the incidents are exactly a
    # prefix of the order they were written in (a snapshot at one instant, nothing torn).
    node.duck.close()
    src_rows = _duck_rows(node.data_dir / "node.duckdb")
    got_rows = _duck_rows(restored / "node.duckdb")
    n = len(got_rows["incidents"])
    assert 120 <= n < len(written)
    assert {r[1] for r in got_rows["incidents"]} == set(written[:n])
    for table, rows in got_rows.items():
        src = set(src_rows[table])
        missing = [r for r in rows if r not in src]
        assert not missing, f"{table}: restored rows not in the source: {missing[:3]}"
    # Each incident was queued for sync in its own transaction: none without the other.
    assert sum(1 for r in got_rows["outbox"] if r[2] == "incident") == n
    assert got_rows["corrections"] == src_rows["corrections"]
    assert got_rows["tokens"] == src_rows["tokens"]
    assert manifest["duckdb"]["rows"]["incidents"] == n

    # LanceDB: the restored table is the source's table at the snapshot version, column by
    # column (vectors included).
    version = manifest["lance"]["memories"]["version"]
    assert _lance_rows(restored / "lance") == _lance_rows(node.data_dir / "lance", version)

    # Audio and keys: same bytes, keys still private.
    for rel in ["audio/ab/ab" + "0" * 62, "keys/node.key"]:
        assert (restored / rel).read_bytes() == (node.data_dir / rel).read_bytes()
    assert (restored / "keys" / "node.key").stat().st_mode & 0o777 == 0o600
    assert (restored / "keys").stat().st_mode & 0o777 == 0o700

    # The restored folder opens as a node and answers the same reads.
    again = EdgeNode(config.load(None, data_dir=restored, node={"tenant_id": "acme"}))
    try:
        assert [i.id for i in again.duck.incidents_for_machine("acme", "M1", limit=1000)] == \
            [r[1] for r in sorted((r for r in got_rows["incidents"] if r[2] == "M1"),
                                  key=lambda r: r[3], reverse=True)]
        q = _memory_rows([seeded[5]], seed=1)[0]["vector"]
        hits = again.lance.vector_search(q, "tenant_id = 'acme'", 3, ["id"])
        assert hits and hits[0]["id"] in {i.id for i in seeded}
        # A new outbox row does not collide with restored ones (the sequence came along).
        again.duck.insert_incidents([_incident(99_999)], outbox=True)
    finally:
        again.close()


def test_cli_backup_and_restore_of_a_stopped_node(edge_settings: config.EdgeSettings,
                                                 tmp_path: Path, capsys: Any) -> None:
    node = EdgeNode(edge_settings)
    _seed(node, 10)
    node.close()
    data = str(edge_settings.data_dir)
    assert edge_main(["backup", "--data-dir", data, "--timestamped", str(tmp_path / "bks")]) == 0
    assert "10 incidents" in capsys.readouterr().out
    [snap] = list((tmp_path / "bks").iterdir())
    assert bk.TIMESTAMP_RE.match(snap.name)
    assert edge_main(["restore", "--data-dir", str(tmp_path / "new"), str(snap)]) == 0
    assert "restored" in capsys.readouterr().out
    # Restoring onto a folder that holds data is refused, and the data is left alone.
    assert edge_main(["restore", "--data-dir", str(tmp_path / "new"), str(snap)]) == 2
    assert "not empty" in capsys.readouterr().err
    # --keep prunes the older scheduled backups.
    (tmp_path / "bks" / "20200101T000000Z").mkdir()
    (tmp_path / "bks" / "20200101T000000Z" / "manifest.json").write_text("{}")
    assert edge_main(["backup", "--data-dir", data, "--timestamped", "--keep", "1",
                      str(tmp_path / "bks2")]) == 0
    assert bk.prune(tmp_path / "bks", 1) == [tmp_path / "bks" / "20200101T000000Z"]


def test_damaged_backup_is_refused_naming_the_file(node: EdgeNode, tmp_path: Path) -> None:
    _seed(node, 5)
    manifest = bk.backup_node(node, tmp_path / "bk")
    victim = next(k for k in manifest["files"] if k.startswith("lance/") and "/data/" in k)
    path = tmp_path / "bk" / victim
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(bk.BackupError, match=victim.replace(".", r"\.")):
        bk.restore(tmp_path / "bk", tmp_path / "r")
    assert not (tmp_path / "r").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.partial")]
    with pytest.raises(bk.BackupError, match="checksum mismatch"):
        bk.verify_backup(tmp_path / "bk")
    (tmp_path / "bk" / "manifest.json").unlink()
    with pytest.raises(bk.BackupError, match="incomplete"):
        bk.restore(tmp_path / "bk", tmp_path / "r")


def test_backup_from_a_newer_release_is_refused(node: EdgeNode, tmp_path: Path) -> None:
    bk.backup_node(node, tmp_path / "bk")
    mpath = tmp_path / "bk" / "manifest.json"
    m = json.loads(mpath.read_text())
    m["schema_version"] = SCHEMA_VERSION + 1
    mpath.write_text(json.dumps(m))
    with pytest.raises(SchemaTooNewError, match="release that wrote it"):
        bk.restore(tmp_path / "bk", tmp_path / "r")


@pytest.mark.parametrize("evil", ["../../victim.txt", "/ABS/victim.txt", "duck/../../victim.txt",
                                  "link/victim.txt"])
def test_restore_refuses_a_manifest_path_outside_the_data_folder_before_opening_anything(
        node: EdgeNode, tmp_path: Path, evil: str) -> None:
    """Restore runs as root from the installer: a manifest naming a path outside the
    backup must not touch that file (the old code truncated it before the checksum)."""
    bk.backup_node(node, tmp_path / "bk")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "outside").mkdir()
    (tmp_path / "bk" / "link").symlink_to(tmp_path)  # a link in the backup leading out
    evil = evil.replace("/ABS", str(tmp_path))
    mpath = tmp_path / "bk" / "manifest.json"
    m = json.loads(mpath.read_text())
    m["files"][evil] = {"sha256": "0" * 64, "size": 8}
    mpath.write_text(json.dumps(m))
    with pytest.raises(bk.BackupError, match="nothing restored") as e:
        bk.restore(tmp_path / "bk", tmp_path / "r")
    assert repr(evil) in str(e.value)
    assert victim.read_text() == "precious"
    assert not (tmp_path / "r").exists(), "the destination was not even created"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.partial")]


def test_backup_refuses_non_empty_or_inner_destination(node: EdgeNode, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConflictError, match="not empty"):
        bk.backup_node(node, tmp_path / "full")
    with pytest.raises(bk.BackupError, match="inside the data folder"):
        bk.backup_node(node, node.data_dir / "backups" / "b1")


def test_cli_beside_a_running_node_says_how_to_reach_it(edge_settings: config.EdgeSettings,
                                                       tmp_path: Path) -> None:
    """Another process holds the DuckDB lock: the command must not fail obscurely."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from rae_edge import config
        from rae_edge.node import EdgeNode
        n = EdgeNode(config.load(None, data_dir={str(edge_settings.data_dir)!r}))
        print("ready", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        env = {**os.environ, "RAE_ADMIN_TOKEN": ""}
        r = subprocess.run([RAE_EDGE, "backup", "--data-dir",
                            str(edge_settings.data_dir), str(tmp_path / "bk")],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 2
        assert "held by a running node" in r.stderr and "--token-file" in r.stderr
        # With a token but nothing answering on the port, it says that too.
        env["RAE_ADMIN_TOKEN"] = "rae_x"
        r = subprocess.run([RAE_EDGE, "backup", "--data-dir",
                            str(edge_settings.data_dir), "--url", "http://127.0.0.1:9",
                            str(tmp_path / "bk")],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 2 and "does not answer" in r.stderr
        assert not (tmp_path / "bk").exists()
    finally:
        holder.kill()
        holder.wait()


def test_lance_snapshot_leaves_replaced_files_behind_and_still_answers(
        node: EdgeNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After compaction the table folder still holds the files older versions used; the
    backup copies only what the snapshot version references, and the copy answers the same
    vector and full-text queries. If the reference scan ever misses a file, the copy is
    redone with every file (checked here by forcing a miss)."""
    incs = _seed(node, 40)
    for k in range(3):  # more versions, then compaction + index rebuilds
        node.lance.add(_memory_rows([_incident(500 + 10 * k + j) for j in range(10)], seed=k))
    node.lance.refresh_indexes(force=True)
    src_files = {p for p in (node.data_dir / "lance").rglob("*") if p.is_file()}
    m = bk.backup_node(node, tmp_path / "bk")
    copied = [k for k in m["files"] if k.startswith("lance/")]
    assert len(copied) < len(src_files)
    bk.restore(tmp_path / "bk", tmp_path / "r")
    again = EdgeNode(config.load(None, data_dir=tmp_path / "r", node={"tenant_id": "acme"}))
    try:
        q = _memory_rows([incs[3]], seed=1)[0]["vector"]
        where = "tenant_id = 'acme'"
        assert [h["id"] for h in again.lance.vector_search(q, where, 5, ["id"])] == \
            [h["id"] for h in node.lance.vector_search(q, where, 5, ["id"])]
        # every match with its BM25 score: equal texts tie, and Lance's order among ties
        # depends on its scan threads, so the top 5 by position is not a stable comparison
        def fts(n: EdgeNode) -> dict[str, float]:
            hits = n.lance.text_search("hydraulic seal", where, 1000, ["id"])
            return {str(h["id"]): round(float(h["_score"]), 4) for h in hits}

        assert fts(again) == fts(node) and fts(node)
    finally:
        again.close()

    monkeypatch.setattr(bk, "_referenced", lambda src, listing, manifest: set())
    m2 = bk.backup_node(node, tmp_path / "bk2")
    assert len([k for k in m2["files"] if k.startswith("lance/")]) > len(copied)
    bk.restore(tmp_path / "bk2", tmp_path / "r2")
    assert _lance_rows(tmp_path / "r2" / "lance") == _lance_rows(tmp_path / "r" / "lance")


def test_cli_beside_a_served_node_goes_through_it(edge_settings: config.EdgeSettings,
                                                 tmp_path: Path) -> None:
    """``rae-edge serve`` holds the data folder; ``rae-edge backup`` with an admin token
    asks it over HTTP (``POST /api/v1/admin/backup``), into the backup root only."""
    import socket
    import time
    import urllib.request

    data = str(edge_settings.data_dir)
    tok = subprocess.run([RAE_EDGE, "token", "create", "--role", "admin", "--data-dir", data],
                         capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "serve.log").open("w")
    srv = subprocess.Popen([RAE_EDGE, "serve", "--data-dir", data, "--host", "127.0.0.1",
                            "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert srv.poll() is None and time.monotonic() < deadline
            try:
                with urllib.request.urlopen(url + "/api/v1/schema/openapi.json",
                                            timeout=2) as r:
                    paths = json.loads(r.read())["paths"]
                    break
            except OSError:
                time.sleep(0.3)
        (tmp_path / "token").write_text(tok)
        assert "/api/v1/admin/backup" in paths

        def backup(dest: Path) -> subprocess.CompletedProcess[str]:
            return subprocess.run([RAE_EDGE, "backup", "--data-dir", data, "--url", url,
                                   "--token-file", str(tmp_path / "token"), str(dest)],
                                  capture_output=True, text=True, timeout=300)

        # The node writes only under its backup root (default '<data_dir>-backups').
        outside = backup(tmp_path / "bk")
        assert outside.returncode != 0
        assert "outside the backup root" in outside.stderr
        assert not (tmp_path / "bk").exists()
        dest = edge_settings.backups_dir() / "bk"
        r = backup(dest)
        assert r.returncode == 0, r.stderr
        bk.verify_backup(dest)
    finally:
        srv.terminate()
        srv.wait(timeout=30)
        log.close()
