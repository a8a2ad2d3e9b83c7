"""Consistent snapshots of a node's data folder, and their restore onto an empty one.

A backup folder holds::

    manifest.json          written last: format, node, schema version, row counts, and the
                           sha256 and size of every other file (no manifest = incomplete)
    node.duckdb            a standalone DuckDB file made by ``COPY FROM DATABASE`` inside
                           one read transaction (MVCC: the node keeps writing meanwhile)
    lance/<t>.lance/...    each LanceDB table at one version: Lance files are immutable, so
                           the files on disk plus that version's manifest (and no newer one)
                           are that version exactly
    audio/, keys/, ...     every other file of the data folder, copied as is

Consistency: the DuckDB snapshot is pinned and the Lance versions are read while the
store's writer lock is held, so both stores are cut at the same instant for this process's
writers (which all go through :class:`~rae_edge.node.EdgeNode`). Audio is content
addressed and written before the row that names it, so every file a snapshot row names is
on disk when the files are listed (right after the cut).

A running node holds the DuckDB write lock, so a backup beside a live node must run inside
it: :func:`backup_node` works on an open :class:`EdgeNode` (the tablet API can expose it as
an admin endpoint); ``rae-edge backup`` opens the data folder itself when no node holds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import duckdb
import lancedb

from rae_edge.errors import ConflictError, RaeError, SchemaTooNewError
from rae_edge.node import EdgeNode
from rae_edge.store.migrations import SCHEMA_VERSION

FORMAT = "rae-edge-backup/1"
MANIFEST = "manifest.json"
DUCK_FILE = "node.duckdb"
LANCE_DIR = "lance"
# Never part of a snapshot: DuckDB's own files (copied through DuckDB), scratch, caches,
# and the running node's runtime file and admin socket (``run``, see rae_edge.runtime).
_SKIP_TOP = {DUCK_FILE, f"{DUCK_FILE}.wal", LANCE_DIR, "tmp", "cache", "backups", "run"}
_SKIP_SUFFIXES = (".tmp", ".partial", ".lock", ".wal")
_U64_MAX = 2**64 - 1
_CHUNK = 1 << 20
TIMESTAMP_RE = re.compile(r"^\d{8}T\d{6}Z$")


class BackupError(RaeError):
    """A backup folder is incomplete, damaged, or cannot be written where asked."""

    code = "backup_invalid"


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int


# -- helpers ------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _copy_hashed(src: Path, dst: Path) -> FileEntry:
    """Copies one file, hashing what it writes (one pass), and keeps its mode (keys: 0600)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    size = 0
    with src.open("rb") as fi, dst.open("wb") as fo:
        while chunk := fi.read(_CHUNK):
            h.update(chunk)
            fo.write(chunk)
            size += len(chunk)
        fo.flush()
        os.fsync(fo.fileno())
    shutil.copymode(src, dst)
    return FileEntry(h.hexdigest(), size)


def _skipped(rel: Path) -> bool:
    return (rel.parts[0] in _SKIP_TOP or any(p.startswith(".") for p in rel.parts)
            or rel.name.endswith(_SKIP_SUFFIXES))


def _files_under(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _manifest_version(path: Path) -> int | None:
    """The table version a Lance ``_versions/*.manifest`` file holds (both naming schemes:
    V2 names are ``u64::MAX - version``, V1 names are the version itself)."""
    if path.suffix != ".manifest" or not path.stem.isdigit():
        return None
    n = int(path.stem)
    return _U64_MAX - n if n > _U64_MAX // 2 else n


def _copy_dir_modes(src_root: Path, dst_root: Path) -> None:
    """Folders keep their source's mode (``keys/`` is usually 0700)."""
    for dirpath, _, _ in os.walk(dst_root):
        rel = Path(dirpath).relative_to(dst_root)
        src = src_root / rel
        if rel.parts and src.is_dir():
            shutil.copymode(src, dirpath)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prepare_dest(dest: Path) -> Path:
    """Checks that ``dest`` is absent or empty; returns the scratch folder beside it that
    becomes ``dest`` by one rename once complete."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConflictError(f"{dest} already exists and is not empty: give a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def _publish(tmp: Path, dest: Path) -> None:
    if dest.exists():
        dest.rmdir()  # empty (checked in _prepare_dest)
    tmp.rename(dest)
    _fsync_dir(dest.parent)


def _duck_counts(path: Path) -> tuple[int, dict[str, int]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "ORDER BY table_name").fetchall()]
        counts: dict[str, int] = {}
        for t in tables:
            got = con.execute(f'SELECT count(*) FROM "{t}"').fetchone()
            counts[t] = int(got[0]) if got else 0
        return (int(row[0]) if row else 0), counts
    finally:
        con.close()


# -- backup ---------------------------------------------------------------------------------
def backup_node(node: EdgeNode, dest: Path) -> dict[str, Any]:
    """Writes a consistent snapshot of ``node``'s data into ``dest`` (absent or empty) while
    the node keeps serving; returns the manifest. The folder appears complete or not at all.
    """
    t0 = time.perf_counter()
    dest = dest.resolve()
    data_dir = node.data_dir.resolve()
    if dest == data_dir or data_dir in dest.parents:
        raise BackupError(f"{dest} is inside the data folder {data_dir}: back up elsewhere")
    tmp = _prepare_dest(dest)
    try:
        files: dict[str, FileEntry] = {}
        lance_versions = _snapshot_duck(node, tmp / DUCK_FILE)
        files[DUCK_FILE] = FileEntry(sha256_file(tmp / DUCK_FILE), (tmp / DUCK_FILE).stat().st_size)
        lance_rows: dict[str, dict[str, int]] = {}
        for table, version in lance_versions.items():
            files.update(_snapshot_lance_table(node.lance.path, tmp / LANCE_DIR, table, version))
            rows = lancedb.connect(str(tmp / LANCE_DIR)).open_table(table).count_rows()
            lance_rows[table] = {"version": version, "rows": int(rows)}
        for src in _files_under(data_dir):
            rel = src.relative_to(data_dir)
            if _skipped(rel) or (tmp in src.parents):
                continue
            files[rel.as_posix()] = _copy_hashed(src, tmp / rel)
        schema, duck_rows = _duck_counts(tmp / DUCK_FILE)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(),
            "node": {"tenant_id": node.tenant_id, "site_id": node.settings.node.site_id,
                     "node_id": node.settings.node.node_id},
            "schema_version": schema,
            "duckdb": {"file": DUCK_FILE, "rows": duck_rows},
            "lance": lance_rows,
            "files": {k: {"sha256": v.sha256, "size": v.size} for k, v in sorted(files.items())},
            "seconds": round(time.perf_counter() - t0, 3),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        _copy_dir_modes(data_dir, tmp)
        _publish(tmp, dest)
        return manifest
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _snapshot_duck(node: EdgeNode, target: Path) -> dict[str, int]:
    """Copies the DuckDB database into ``target`` as of one instant; returns the Lance table
    versions read at that same instant."""
    store = node.duck
    # The store's lock serialises every writer of this process; holding it while the read
    # transaction takes its snapshot and the Lance versions are read cuts both stores at
    # one instant. The copy itself runs after the lock is released (MVCC).
    cur = store._con.cursor()  # the store has no snapshot API
    alias = f"rae_backup_{uuid.uuid4().hex[:8]}"
    try:
        with store._lock:
            db_row = cur.execute("SELECT current_database()").fetchone()
            main_db = str(db_row[0]) if db_row else "main"
            # ATTACH takes no bound parameter; the path is quoted as a SQL string literal.
            cur.execute(f"ATTACH '{str(target).replace(chr(39), chr(39) * 2)}' AS {alias}")
            cur.execute("BEGIN TRANSACTION")
            # DuckDB starts a database's snapshot when the transaction first touches it.
            cur.execute("SELECT count(*) FROM meta").fetchall()
            lance_db = lancedb.connect(str(node.lance.path))
            versions = {name: int(lance_db.open_table(name).version)
                        for name in lance_db.list_tables().tables}
        cur.execute(f'COPY FROM DATABASE "{main_db}" TO {alias}')
        cur.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            cur.execute("ROLLBACK")
        raise
    finally:
        with contextlib.suppress(duckdb.Error):
            cur.execute(f"DETACH {alias}")
        cur.close()
    with target.open("rb") as f:
        os.fsync(f.fileno())
    return versions


def _snapshot_lance_table(lance_root: Path, out_root: Path, table: str,
                          version: int) -> dict[str, FileEntry]:
    """Copies one table as of ``version``: that version's manifest (and no other, so the
    copy opens at it) and the files it references. Lance files are never rewritten in
    place, so the files on disk are that version's exactly.

    Which data files and indexes a manifest references is read from its bytes (data file
    names and index UUIDs appear there verbatim), which leaves behind the files of older
    versions that compaction replaced. The copy is then opened and scanned whole; if that
    fails, it is redone with every file present (always correct, just larger)."""
    src_dir = lance_root / f"{table}.lance"
    manifest_file = next((p for p in (src_dir / "_versions").glob("*.manifest")
                          if _manifest_version(p) == version), None)
    if manifest_file is None:
        raise BackupError(f"LanceDB table {table!r}: the manifest of version {version} "
                          "vanished during the backup (was the table cleaned up?)")
    listing = list(_files_under(src_dir))
    wanted = _referenced(src_dir, listing, manifest_file.read_bytes())
    out = _copy_table(src_dir, out_root, table, version, listing, wanted)
    if not _opens_whole(out_root, table, version):
        shutil.rmtree(out_root / f"{table}.lance")
        out = _copy_table(src_dir, out_root, table, version, listing, None)
        if not _opens_whole(out_root, table, version):
            raise BackupError(f"LanceDB table {table!r} at version {version} does not read "
                              "back whole from its copy: is the table damaged?")
    return out


def _referenced(src_dir: Path, listing: list[Path], manifest: bytes) -> set[Path]:
    keep: set[Path] = set()
    for src in listing:
        rel = src.relative_to(src_dir)
        top = rel.parts[0]
        if top in ("data", "_transactions"):
            if rel.name.encode() in manifest:
                keep.add(rel)
        elif top == "_indices" and len(rel.parts) > 2:
            try:
                ident = uuid.UUID(rel.parts[1])
            except ValueError:
                keep.add(rel)
                continue
            if ident.bytes in manifest or rel.parts[1].encode() in manifest:
                keep.add(rel)
        else:
            keep.add(rel)  # deletion files and anything unknown: always
    return keep


def _copy_table(src_dir: Path, out_root: Path, table: str, version: int, listing: list[Path],
                wanted: set[Path] | None) -> dict[str, FileEntry]:
    out: dict[str, FileEntry] = {}
    for src in listing:
        rel = src.relative_to(src_dir)
        if rel.parts[0] == "_versions":
            if _manifest_version(src) != version:
                continue  # older/newer manifests, and the latest-version hint
        elif wanted is not None and rel not in wanted:
            continue
        entry_rel = Path(LANCE_DIR) / f"{table}.lance" / rel
        try:
            out[entry_rel.as_posix()] = _copy_hashed(src, out_root.parent / entry_rel)
        except FileNotFoundError:
            # A version cleanup removed it meanwhile: cleanup never removes files of the
            # latest versions, so it was not one the snapshot needs (checked on open).
            if wanted is not None:
                raise
    return out


def _opens_whole(out_root: Path, table: str, version: int) -> bool:
    """The copied table opens at ``version``, every row reads back (every data file is
    there), and no index lost all its files."""
    try:
        t = lancedb.connect(str(out_root)).open_table(table)
        if int(t.version) != version or t.to_arrow().num_rows != t.count_rows():
            return False
        # Each index has at least one UUID folder that the manifest names (more with deltas).
        kept = {p.name for p in (out_root / f"{table}.lance" / "_indices").glob("*")}
        return len(kept) >= len(list(t.list_indices()))
    except Exception:  # any failure means: copy everything instead
        return False


# -- verify and restore ----------------------------------------------------------------------
def read_manifest(src: Path) -> dict[str, Any]:
    path = src / MANIFEST
    if not path.is_file():
        raise BackupError(f"{src} has no {MANIFEST}: not a backup, or an incomplete one")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BackupError(f"{path} is not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: unknown backup format {manifest.get('format')!r} "
                          f"(this release reads {FORMAT})")
    return manifest


def verify_backup(src: Path) -> dict[str, Any]:
    """Checks every file of a backup against its manifest; raises naming each bad file."""
    manifest = read_manifest(src)
    problems: list[str] = []
    for rel, meta in manifest["files"].items():
        path = src / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != meta["size"] or sha256_file(path) != meta["sha256"]:
            problems.append(f"{rel}: checksum mismatch")
    if problems:
        raise BackupError(f"backup {src} is damaged: " + "; ".join(problems))
    return manifest


def restore(src: Path, data_dir: Path) -> dict[str, Any]:
    """Restores the backup in ``src`` into ``data_dir`` (absent or empty), checking every
    file's sha256 as it is copied; the data folder appears complete or not at all. Returns
    the manifest plus ``restored_rows``, the counts read back from the restored stores."""
    t0 = time.perf_counter()
    src, data_dir = src.resolve(), data_dir.resolve()
    manifest = read_manifest(src)
    if int(manifest["schema_version"]) > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"backup {src} holds data schema {manifest['schema_version']}, but this release "
            f"only knows up to {SCHEMA_VERSION}: restore it with the release that wrote it")
    # Before anything is opened: restore runs as root from the installer, and a manifest
    # naming "../../x" or "/etc/passwd" must not make it truncate that file.
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BackupError(f"backup {src}: the manifest's 'files' is not a mapping")
    for rel in files:
        _check_inside(src, rel)
    tmp = _prepare_dest(data_dir)
    try:
        bad: list[str] = []
        for rel, meta in manifest["files"].items():
            path = src / rel
            if not path.is_file():
                bad.append(f"{rel}: missing")
                continue
            got = _copy_hashed(path, tmp / rel)
            if got.sha256 != meta["sha256"] or got.size != meta["size"]:
                bad.append(f"{rel}: checksum mismatch")
        if bad:
            raise BackupError(f"backup {src} is damaged, nothing restored: " + "; ".join(bad))
        _check_restored(tmp, manifest)
        _copy_dir_modes(src, tmp)
        _publish(tmp, data_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**manifest, "restore_seconds": round(time.perf_counter() - t0, 3)}


def _check_inside(src: Path, rel: object) -> None:
    """``rel`` must be a plain relative path inside the backup (and so inside the data
    folder it is restored to): no absolute path, no '..', no link leading out."""
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise BackupError(f"backup {src}: the manifest names an invalid path {rel!r}: "
                          "nothing restored")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or PureWindowsPath(rel).is_absolute() or ".." in pure.parts \
            or "\\" in rel:
        raise BackupError(f"backup {src}: the manifest names {rel!r}, a path outside the "
                          "data folder: nothing restored")
    if not (src / rel).resolve().is_relative_to(src):
        raise BackupError(f"backup {src}: {rel!r} leads outside the backup (a link): "
                          "nothing restored")


def _check_restored(root: Path, manifest: dict[str, Any]) -> None:
    """Reads the restored stores back: row counts must equal the manifest's."""
    _, rows = _duck_counts(root / DUCK_FILE)
    if rows != manifest["duckdb"]["rows"]:
        raise BackupError(f"restored DuckDB rows {rows} differ from the manifest's "
                          f"{manifest['duckdb']['rows']}")
    if manifest["lance"]:
        db = lancedb.connect(str(root / LANCE_DIR))
        for table, meta in manifest["lance"].items():
            t = db.open_table(table)
            if int(t.version) != meta["version"] or int(t.count_rows()) != meta["rows"]:
                raise BackupError(f"restored LanceDB table {table!r} is at version {t.version} "
                                  f"with {t.count_rows()} rows; the manifest says {meta}")


def timestamped(root: Path, now: datetime | None = None) -> Path:
    """``root/<UTC timestamp>``: the folder a scheduled backup writes."""
    return root / (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def prune(root: Path, keep: int) -> list[Path]:
    """Deletes all but the ``keep`` newest complete timestamped backups under ``root``."""
    done = sorted(p for p in root.iterdir()
                  if p.is_dir() and TIMESTAMP_RE.match(p.name) and (p / MANIFEST).is_file())
    gone = done[:-keep] if keep > 0 else []
    for p in gone:
        shutil.rmtree(p)
    return gone
