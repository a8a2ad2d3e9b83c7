"""``rae-edge backup DIR`` and ``rae-edge restore DIR``.

``backup`` opens the data folder itself when no node holds it. When a running node holds
the DuckDB lock, the snapshot has to be taken inside that node: the command then asks it
(``POST /api/v1/admin/backup {"dest": DIR}``) over its local admin channel, or over
HTTP(S) with ``--url``/``--token-file`` (the same helper as ``rae-edge token``), and says
so plainly when it cannot. ``restore`` refuses a data folder a running node holds.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import duckdb

from rae_edge import backup as bk
from rae_edge import runtime
from rae_edge.commands.live_node import add_live_args, call_live_node, is_lock_conflict
from rae_edge.commands.registry import command, settings_from_args
from rae_edge.config import EdgeSettings
from rae_edge.errors import ConflictError, NotFoundError
from rae_edge.node import EdgeNode

ADMIN_BACKUP_PATH = "/api/v1/admin/backup"


def _backup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="folder to write (absent or empty)")
    p.add_argument("--timestamped", action="store_true",
                   help="write into DIR/<UTC timestamp>/ (scheduled backups)")
    p.add_argument("--keep", type=int, default=0,
                   help="with --timestamped: keep only the N newest backups in DIR")
    add_live_args(p)


def _restore_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="a folder written by rae-edge backup")


def _summary(manifest: dict[str, Any], where: Path) -> str:
    rows = manifest["duckdb"]["rows"]
    lance = manifest["lance"]
    return (f"{where}: schema {manifest['schema_version']}, "
            f"{rows.get('incidents', 0)} incidents, {rows.get('corrections', 0)} corrections, "
            + ", ".join(f"{m['rows']} rows in lance table {t} (version {m['version']})"
                        for t, m in lance.items())
            + f", {len(manifest['files'])} files checked by sha256")


@command("backup", "consistent snapshot of the node's data into DIR", _backup_args)
def backup(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    dest: Path = bk.timestamped(args.dir) if args.timestamped else args.dir
    try:
        node = EdgeNode(settings)
    except duckdb.IOException as exc:
        if not is_lock_conflict(exc):
            raise
        manifest = _backup_via_node(settings, dest.resolve(), args)
    else:
        try:
            manifest = bk.backup_node(node, dest)
        finally:
            node.close()
    print(f"backup written to {_summary(manifest, dest)}")
    if args.timestamped and args.keep > 0:
        for gone in bk.prune(args.dir, args.keep):
            print(f"removed old backup {gone}")
    return 0


def _backup_via_node(settings: EdgeSettings, dest: Path,
                     args: argparse.Namespace) -> dict[str, Any]:
    """The data folder is held by a running node: ask that node to take the snapshot."""
    try:
        return call_live_node(settings, args, "POST", ADMIN_BACKUP_PATH, {"dest": str(dest)})
    except NotFoundError as exc:
        raise ConflictError(f"{settings.data_dir} is held by a running node, and it has no "
                            f"backup endpoint ({ADMIN_BACKUP_PATH}): stop it, or upgrade it"
                            ) from exc


@command("restore", "restore a backup DIR onto an empty data folder", _restore_args)
def restore(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    live = runtime.read(settings.data_dir)
    if live is not None and runtime.admin_socket_answers(live):
        raise ConflictError(f"{settings.data_dir} is held by a running node (pid {live.pid}, "
                            f"{live.url}): stop it first; a restore needs an empty data folder")
    manifest = bk.restore(args.dir, settings.data_dir)
    print(f"restored {_summary(manifest, settings.data_dir)} "
          f"in {manifest['restore_seconds']:.1f} s")
    # Open it as a node would: migrates an older schema forward, and proves it opens.
    EdgeNode(settings).close()
    return 0
