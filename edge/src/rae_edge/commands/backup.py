"""``rae-edge backup DIR`` and ``rae-edge restore DIR``.

``backup`` opens the data folder itself when no node holds it. When a running node holds
the DuckDB lock, the snapshot has to be taken inside that node: the command then asks it
over HTTP (``POST /api/v1/admin/backup {"dest": DIR}`` with an admin token from
``--token-file`` or ``RAE_ADMIN_TOKEN``), and says so plainly when it cannot.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import duckdb

from rae_edge import backup as bk
from rae_edge.cli import command, settings_from_args
from rae_edge.config import EdgeSettings
from rae_edge.errors import ConflictError
from rae_edge.node import EdgeNode

ADMIN_BACKUP_PATH = "/api/v1/admin/backup"


def _backup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="folder to write (absent or empty)")
    p.add_argument("--timestamped", action="store_true",
                   help="write into DIR/<UTC timestamp>/ (scheduled backups)")
    p.add_argument("--keep", type=int, default=0,
                   help="with --timestamped: keep only the N newest backups in DIR")
    p.add_argument("--url", default=None,
                   help="a running node's base URL (default: from the config's api section)")
    p.add_argument("--token-file", type=Path, default=None,
                   help="admin token for a running node (default: $RAE_ADMIN_TOKEN)")


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


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    return "lock" in str(exc).lower()


@command("backup", "consistent snapshot of the node's data into DIR", _backup_args)
def backup(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    dest: Path = bk.timestamped(args.dir) if args.timestamped else args.dir
    try:
        node = EdgeNode(settings)
    except duckdb.IOException as exc:
        if not _is_lock_conflict(exc):
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
    wildcard = settings.api.host in ("0.0.0.0", "::")  # noqa: S104 - a bind address we read
    host = "127.0.0.1" if wildcard else settings.api.host
    url = (args.url or f"http://{host}:{settings.api.port}").rstrip("/") + ADMIN_BACKUP_PATH
    if not url.startswith(("http://", "https://")):
        raise ConflictError(f"--url must be an http(s) URL, not {url!r}")
    token = (args.token_file.read_text().strip() if args.token_file
             else os.environ.get("RAE_ADMIN_TOKEN", ""))
    held = f"{settings.data_dir} is held by a running node"
    if not token:
        raise ConflictError(f"{held}; pass --token-file (an admin token) so the backup goes "
                            f"through it at {url}, or stop the node first")
    req = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=json.dumps({"dest": str(dest)}).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=3600) as resp:  # noqa: S310 - our own node
            answer: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 405):
            raise ConflictError(f"{held}, and the node at {url} has no backup endpoint: "
                                "stop it, or upgrade it") from exc
        raise ConflictError(f"{held}; its backup endpoint answered {exc.code}: "
                            f"{exc.read()[:500]!r}") from exc
    except urllib.error.URLError as exc:
        raise ConflictError(f"{held}, and it does not answer at {url}: {exc.reason}") from exc
    return answer


@command("restore", "restore a backup DIR onto an empty data folder", _restore_args)
def restore(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    manifest = bk.restore(args.dir, settings.data_dir)
    print(f"restored {_summary(manifest, settings.data_dir)} "
          f"in {manifest['restore_seconds']:.1f} s")
    # Open it as a node would: migrates an older schema forward, and proves it opens.
    EdgeNode(settings).close()
    return 0
