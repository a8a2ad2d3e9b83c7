"""Central's backup scripts: pg_dump/pg_restore round trip on a real PostgreSQL started
here, and the Qdrant export/restore through qdrant-client (local mode)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.image.conftest import free_port

OPS = ROOT / "central" / "ops"
PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[str]:
    if not PG_BIN:
        pytest.skip("PostgreSQL binaries are not installed (/usr/lib/postgresql/*/bin)")
    bin_ = Path(PG_BIN[-1])
    # pytest's tmp folders are private to root; the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="rae-pg-"))
    base.chmod(0o755)
    data, sock = base / "pg", base / "sock"
    data.mkdir()
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        pw = pwd.getpwnam("postgres")
        for p in (base, data, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, bin_ / "initdb", "-D", data, "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)
    port = free_port()
    subprocess.run([*as_user, bin_ / "pg_ctl", "-D", data, "-w", "-l", base / "pg.log",
                    "-o", f"-p {port} -k {sock} -c listen_addresses=''", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@/{{db}}?host={sock}&port={port}"
    finally:
        subprocess.run([*as_user, bin_ / "pg_ctl", "-D", data, "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def psql(url: str, sql: str) -> str:
    return subprocess.run([Path(PG_BIN[-1]) / "psql", url, "-Atc", sql], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_postgres_dump_and_restore_round_trip(postgres: str, tmp_path: Path) -> None:
    src, dst = postgres.format(db="central"), postgres.format(db="restored")
    psql(postgres.format(db="postgres"), "CREATE DATABASE central")
    psql(postgres.format(db="postgres"), "CREATE DATABASE restored")
    psql(src, "CREATE TABLE messages (id text PRIMARY KEY, node text, body jsonb, "
              "at timestamptz DEFAULT now()); CREATE INDEX m_node ON messages (node);"
              "INSERT INTO messages (id, node, body) SELECT 'm' || g, 'n' || (g % 3), "
              "jsonb_build_object('seq', g) FROM generate_series(1, 500) g")
    out = tmp_path / "backups"
    env = {**os.environ, "DATABASE_URL": src}
    r = subprocess.run([OPS / "backup-postgres.sh", out], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    dump = Path(r.stdout.strip().splitlines()[-1])
    assert dump.exists() and dump.with_name(dump.name + ".sha256").exists()
    r = subprocess.run([OPS / "restore-postgres.sh", dump, dst], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    q = "SELECT string_agg(id || node || body::text, ',' ORDER BY id) FROM messages"
    assert psql(dst, q) == psql(src, q) != ""
    assert psql(dst, "SELECT indexname FROM pg_indexes WHERE indexname = 'm_node'") == "m_node"
    # A second restore into the now non-empty database is refused, as is a damaged dump.
    r = subprocess.run([OPS / "restore-postgres.sh", dump, dst], capture_output=True, text=True)
    assert r.returncode == 2 and "empty one" in r.stderr
    raw = bytearray(dump.read_bytes())
    raw[-10] ^= 0xFF
    dump.write_bytes(bytes(raw))
    r = subprocess.run([OPS / "restore-postgres.sh", dump, dst], capture_output=True, text=True)
    assert r.returncode == 2 and "sha256" in r.stderr


def test_qdrant_local_export_and_restore(tmp_path: Path) -> None:
    qc = pytest.importorskip("qdrant_client")
    from qdrant_client import models

    src = tmp_path / "q"
    c = qc.QdrantClient(path=str(src))
    c.create_collection("memories", vectors_config=models.VectorParams(
        size=8, distance=models.Distance.COSINE))
    pts = [models.PointStruct(id=i, vector=[float((i * k) % 7) + 0.5 for k in range(8)],
                              payload={"machine_id": f"M{i % 3}", "text": f"note {i}"})
           for i in range(1, 121)]
    c.upsert("memories", pts)
    c.close()
    py = sys.executable
    r = subprocess.run([py, OPS / "qdrant_backup.py", "create", tmp_path / "bk", "--path",
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([py, OPS / "qdrant_backup.py", "restore", tmp_path / "bk", "--path",
                        str(tmp_path / "q2")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b = qc.QdrantClient(path=str(src)), qc.QdrantClient(path=str(tmp_path / "q2"))
    try:
        def dump(cl: object) -> list[tuple[object, object, object]]:
            got, _ = cl.scroll("memories", limit=1000, with_vectors=True)  # type: ignore[attr-defined]
            return sorted((p.id, p.vector, p.payload) for p in got)

        assert dump(a) == dump(b) and len(dump(b)) == 120
    finally:
        a.close()
        b.close()
